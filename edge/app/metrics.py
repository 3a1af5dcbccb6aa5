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


class LatencyRing:
    """The last LATENCY_WINDOWS times in milliseconds (preallocated: nothing allocated per window)."""

    def __init__(self):
        self._ms = np.zeros(LATENCY_WINDOWS, np.float32)
        self._none = np.zeros(1, np.float32)  # before the first
        self.count = 0

    def add(self, seconds: float) -> None:
        self._ms[self.count % LATENCY_WINDOWS] = seconds * 1e3
        self.count += 1

    def p50_p99(self) -> tuple[float, float]:
        """(p50, p99) in milliseconds (0 before the first)."""
        n = min(self.count, LATENCY_WINDOWS)
        ordered = np.sort(self._ms[:n] if n else self._none)
        return round(percentile(ordered, 50), 3), round(percentile(ordered, 99), 3)


class LoopMetrics:
    """What one source's loop counts (plain attributes: nothing allocated per window), its windows' latency (from
    the moment a window's audio was all there to its scores) and its sound level."""

    def __init__(self):
        self.windows = 0  # the hop grid's windows
        self.gated = 0  # of those, below the level gate (not classified)
        self.onset_windows = 0  # extra windows classified where a sound began (counted apart from `windows`)
        self.events = 0
        self.busy_s = 0.0  # time spent classifying this source's windows (the grid's and onsets')
        self.audio_s = 0.0  # audio taken from the capture thread
        self.waited = LatencyRing()  # audio there -> scores, per window classified
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

    def part(self, capture, missed: int) -> dict:
        """This source's counters, as its own metrics topic and the daemon's `sources` map show them."""
        p50, p99 = self.waited.p50_p99()
        return {"windows": self.windows, "gated_windows": self.gated, "onset_windows": self.onset_windows,
                "events": self.events, "level_dbfs": self.level_dbfs(),
                "real_time_factor": round(self.busy_s / self.audio_s, 5) if self.audio_s else 0.0,
                "latency_p50_ms": p50, "latency_p99_ms": p99, "missed_windows": missed,
                "overruns": capture.source.overruns, "stalls": capture.stalls, "reopens": capture.reopens,
                "online": not capture.problem and not capture.failed, "problem": capture.failed or capture.problem,
                "gaps": capture.gaps, "gap_seconds": round(capture.gap_s, 1), "source": capture.source.name}


def device_payload(parts: dict, invokes: LatencyRing, classifier, delegate_switches: int, sink, failed: str,
                   started: float) -> dict:
    """The daemon's metrics message: every source's counters summed under the names a one-source daemon always
    published (SINK_HEALTH's keys always there), the shared classifier's invoke latency, and with [[sources]]
    each source's own part under `sources`. `parts`: {source id: LoopMetrics.part()}."""
    p50, p99 = invokes.p50_p99()
    total = {k: sum(p[k] for p in parts.values()) for k in ("windows", "gated_windows", "onset_windows", "events",
                                                            "overruns", "stalls", "reopens", "missed_windows")}
    levels = [p["level_dbfs"] for p in parts.values() if p["level_dbfs"] is not None]
    busy = sum(p["real_time_factor"] for p in parts.values())
    payload = {
        "windows": total["windows"], "gated_windows": total["gated_windows"],
        "onset_windows": total["onset_windows"], "events": total["events"],
        "level_dbfs": max(levels) if levels else None,
        "inference_p50_ms": p50, "inference_p99_ms": p99,
        "real_time_factor": round(busy, 5),
        "overruns": total["overruns"], "skipped_windows": total["missed_windows"],
        "stalls": total["stalls"], "reopens": total["reopens"],
        "delegate": classifier.decision.delegate, "delegate_reason": classifier.decision.reason,
        "model": classifier.model_name, "delegate_switches": delegate_switches,
        **SINK_HEALTH, **sink.health(),
        "failed": failed or sink.failure(),
        "uptime_s": round(time.monotonic() - started, 1),
    }
    if any(parts):  # named sources
        payload["sources"] = parts
        payload["sources_online"] = sum(p["online"] for p in parts.values())
    return payload


def percentile(ordered: np.ndarray, q: float) -> float:
    """np.percentile's default (linear between the two nearest ranks) of an array already sorted. np.percentile
    itself imports numpy.ma the first time (2 MB resident), the first metrics would raise the peak RSS."""
    pos = q / 100.0 * (ordered.size - 1)
    lo = int(pos)
    hi = min(lo + 1, ordered.size - 1)
    return float(ordered[lo]) + (float(ordered[hi]) - float(ordered[lo])) * (pos - lo)
