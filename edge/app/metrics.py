"""The daemon's metrics: what its loop counts, the latencies of the last invokes, and the payload published on the
metrics topic (Home Assistant's sensors read its keys: they are only ever added)."""

from __future__ import annotations

import math
import time

import numpy as np

LATENCY_WINDOWS = 512  # the p50/p99 in metrics cover the last this many invokes (grid and onset windows)
# sink counters in the metrics payload, as they read when no sink reports them (the payload keeps its keys)
SINK_HEALTH = {"mqtt_connected": None, "reconnects": 0, "queue_depth": 0, "produced_events": 0,
               "delivered_events": 0, "dropped_events": 0, "dropped_messages": 0, "refused_events": 0,
               "set_aside_events": 0, "refused_messages": 0, "delivery_confirmed": None,
               "spool": None, "spool_recovered": 0, "spool_corrupt_records": 0, "spool_set_aside": 0,
               "spool_lost_events": 0, "spool_unwritten_events": 0, "spool_problem": "", "mqtt_error": ""}


class LoopMetrics:
    """Counters the audio loop bumps (plain attributes: nothing allocated per window) and a ring of the last
    LATENCY_WINDOWS inference times."""

    def __init__(self):
        self.windows = 0  # the hop grid's windows
        self.gated = 0  # of those, below the level gate (not classified)
        self.onset_windows = 0  # extra windows classified where a sound began (counted apart from `windows`)
        self.events = 0
        self.busy_s = 0.0  # time spent classifying, every window classified (the grid's and onsets')
        self.audio_s = 0.0  # audio taken from the capture thread
        self.invokes = 0  # windows classified: where the next latency goes in the ring
        self._latency_ms = np.zeros(LATENCY_WINDOWS, np.float32)
        self._none = np.zeros(1, np.float32)  # the latencies before the first invoke
        self.started = time.monotonic()
        self._power = 0.0  # the grid windows' mean square (full scale 1) summed since the last payload
        self._heard = 0  # and how many windows that is

    def heard(self, level_dbfs: float) -> None:
        """One grid window's level (every window, gated or not): the next payload's `level_dbfs`."""
        self._power += math.pow(10.0, level_dbfs * 0.1)
        self._heard += 1

    def level_dbfs(self) -> float | None:
        """The level of the grid windows heard since the last call, as one power average in dBFS, rounded to 0.1 dB
        (None when none were heard); the next call starts from here."""
        if not self._heard:
            return None
        mean, self._power, self._heard = self._power / self._heard, 0.0, 0
        return round(10.0 * math.log10(max(mean, 1e-12)), 1)

    def invoked(self, spent_s: float) -> None:
        """One window classified in `spent_s` seconds."""
        self.busy_s += spent_s
        self._latency_ms[self.invokes % LATENCY_WINDOWS] = spent_s * 1e3
        self.invokes += 1

    def latency_ms(self) -> tuple[float, float]:
        """(p50, p99) of the recent invokes, in milliseconds (0 before the first)."""
        n = min(self.invokes, LATENCY_WINDOWS)
        ordered = np.sort(self._latency_ms[:n] if n else self._none)
        return round(percentile(ordered, 50), 3), round(percentile(ordered, 99), 3)

    def payload(self, capture, classifier, delegate_switches: int, skipped_windows: int, sink) -> dict:
        """The metrics message: these counters, the capture's, the model's and the sink's (SINK_HEALTH's keys
        always there), and the sound level since the previous message (`level_dbfs`, null when no window was
        heard)."""
        p50, p99 = self.latency_ms()
        return {
            "windows": self.windows, "gated_windows": self.gated, "onset_windows": self.onset_windows,
            "events": self.events, "level_dbfs": self.level_dbfs(),
            "inference_p50_ms": p50,
            "inference_p99_ms": p99,
            "real_time_factor": round(self.busy_s / self.audio_s, 5) if self.audio_s else 0.0,
            "overruns": capture.source.overruns,
            "skipped_windows": skipped_windows,
            "stalls": capture.stalls, "reopens": capture.reopens,
            "delegate": classifier.decision.delegate, "delegate_reason": classifier.decision.reason,
            "model": classifier.model_name, "delegate_switches": delegate_switches,
            **SINK_HEALTH, **sink.health(),
            "failed": capture.failed or sink.failure(),
            "uptime_s": round(time.monotonic() - self.started, 1),
        }


def percentile(ordered: np.ndarray, q: float) -> float:
    """np.percentile's default (linear between the two nearest ranks) of an array already sorted. np.percentile
    itself imports numpy.ma the first time (2 MB resident), the first metrics would raise the peak RSS."""
    pos = q / 100.0 * (ordered.size - 1)
    lo = int(pos)
    hi = min(lo + 1, ordered.size - 1)
    return float(ordered[lo]) + (float(ordered[hi]) - float(ordered[lo])) * (pos - lo)
