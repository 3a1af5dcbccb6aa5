"""The always-on daemon: capture -> window loop -> classifier -> detector -> events -> sink, plus metrics.

The processing loop owns the window loop, classifier and detector; capture and the sinks' network work run in
their own threads and meet the loop only through bounded queues, so a slow broker or a stalled device never
stops the audio path. The delegate in use is kept true by edge/model/delegate.py's DelegateSupervisor.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import socket
import time

import numpy as np

from ..audio.capture import Capture
from ..config import Config
from ..core.detector import Detector, DetectorParams, level_dbfs
from ..core.errors import EXIT_UNEXPECTED, ConfigError, InputError
from ..core.events import Event, iso
from ..core.stream import WindowLoop, hop_samples_for
from ..core.thresholds import ThresholdLayers
from ..model.classifier import Classifier
from ..model.delegate import DelegateSupervisor
from ..sinks.base import Sink
from ..sinks.jsonl import JsonLinesSink
from .metrics import LoopMetrics
from .threshold_sources import bundle_thresholds, state_labels_for, threshold_layers

log = logging.getLogger("edge.daemon")
SHUTDOWN_CAPTURE_S = 0.5  # SIGTERM to exit stays under 5 s: capture join + outbox wait + "offline"
SHUTDOWN_OUTBOX_S = 2.5
WAIT_S = 0.5  # the loop sleeps until a window's worth of audio is there, or this long (stop, stall, metrics)
GATED_TOP = -2  # below the level gate nothing was classified: "top" reads "none"


class SystemdNotifier:
    """sd_notify without libsystemd: READY=1, WATCHDOG=1 and STATUS= on the notify socket. With no socket (not
    the service: a test, a calibration listen) it says nothing."""

    def __init__(self, address: str = "", watchdog_usec: str = ""):
        self._sock = None
        if address:
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.watchdog_s = int(watchdog_usec) / 2e6 if watchdog_usec.isdigit() else 0.0
        self._last = 0.0

    @classmethod
    def from_environment(cls) -> "SystemdNotifier":
        """The one systemd gave the service ($NOTIFY_SOCKET, $WATCHDOG_USEC)."""
        return cls(os.environ.get("NOTIFY_SOCKET", ""), os.environ.get("WATCHDOG_USEC", ""))

    def notify(self, message: str) -> None:
        if self._sock is not None:
            try:
                self._sock.sendto(message.encode(), self._address)
            except OSError:
                pass

    def ping(self, now: float) -> None:
        if self.watchdog_s and now - self._last >= self.watchdog_s:
            self._last = now
            self.notify("WATCHDOG=1")


class Daemon:
    def __init__(self, cfg: Config, classifier: Classifier, capture: Capture, sink: Sink | None = None,
                 clock=time.time, open_classifier=None, thresholds: ThresholdLayers | None = None,
                 observer=None, *, state_labels: list[str] | None = None,
                 notifier: SystemdNotifier | None = None):
        """The loop and its parts. `sink`: where events go (default: JSON lines on stdout); `thresholds`: the
        per-label layers (default: the config's own and the bundle's, no calibration file); `state_labels`: the
        watched labels that get an ON/OFF state, as build() worked them out for the sinks (default: worked out
        here from the config and `thresholds`); `notifier`: systemd's (default: one that says nothing, for
        anything that is not the service);
        `observer(daemon, level_dbfs, gated)` is called after every window, once the detector has seen it."""
        self.cfg = cfg
        # how to load the model again with another delegate policy (the CPU fallback, the TPU retry)
        self.delegates = DelegateSupervisor(classifier, open_classifier or self.reopen_classifier, self._switched)
        self.capture = capture
        self.sink = sink if sink is not None else JsonLinesSink()  # no sink configured: events on stdout
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.clock = clock
        self.device_id = cfg.device_id
        self.thresholds = thresholds or threshold_layers(cfg, classifier.labels, bundle_thresholds(classifier))
        self.observer = observer
        params = self._watch(classifier)
        if state_labels is None:
            state_labels = state_labels_for(cfg, classifier.labels, self.thresholds)
        self.state_labels = set(state_labels)  # the labels with an ON/OFF state
        self.stats = LoopMetrics()
        self._stop = False
        self._loop: WindowLoop | None = None
        self._generation = -1
        self._t0 = 0.0
        self._silence = np.zeros(len(classifier.labels), np.float32)
        self._onset_lead = round(params.onset_lead_seconds * classifier.params.sample_rate_hz)
        capture.onset_lead_seconds = params.onset_lead_seconds
        self._last_metrics = time.monotonic()
        self._last_scores = 0.0
        self._top = -1  # nothing published yet

    def _watch(self, classifier: Classifier) -> DetectorParams:
        """The detector, at the layers' thresholds (with no allow list a trained bundle's own labels are the ones
        watched); the parameters it runs with."""
        params = self.thresholds.apply(self.cfg.detector)
        try:
            self.detector = Detector(classifier.labels, params,
                                     {"device_id": self.device_id, "model": classifier.model_name,
                                      "delegate": classifier.decision.delegate})
        except InputError as exc:  # an unknown label in [detector]
            raise ConfigError(f"{self.cfg.path}: {exc}") from None
        return params

    # -- what the loop counted (the metrics payload's names) ----------------------------------------------------
    @property
    def windows(self) -> int:
        return self.stats.windows

    @property
    def gated(self) -> int:
        return self.stats.gated

    @property
    def onset_windows(self) -> int:
        return self.stats.onset_windows

    @property
    def events(self) -> int:
        return self.stats.events

    def reopen_classifier(self, delegate: str | None) -> Classifier:
        """The model again with `delegate` ('cpu': the fallback), or with the configured policy and a fresh Edge
        TPU probe (None: the run-time retry; a cached verdict would not see a TPU that came back)."""
        return Classifier.from_config(self.cfg.model, delegate, fresh_probe=delegate is None)

    @property
    def classifier(self) -> Classifier:
        return self.delegates.classifier

    @property
    def delegate_switches(self) -> int:
        return self.delegates.switches

    def request_stop(self, *_args) -> None:
        self._stop = True

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self) -> int:
        self.sink.start()
        self._end_what_was_left_open()
        self.capture.start()
        self.notifier.notify("READY=1\nSTATUS=listening")
        log.info("%s", self.classifier.describe())
        ended = False
        failure = ""
        try:
            while not self._stop:
                now = time.monotonic()
                failure = self.capture.failed or self.sink.failure()
                if failure:  # a thread died: no more watchdog pings, exit 1, and systemd starts a fresh process
                    log.error("stopping: %s", failure)
                    self.notifier.notify(f"STATUS=failed: {failure}")
                    break
                self.notifier.ping(now)
                if now - self._last_metrics >= self.cfg.metrics.interval_seconds:
                    self._metrics(now)
                self.sink.flush()  # what this pass queued goes out while the loop sleeps
                item = self.capture.get(WAIT_S)
                queued = self.capture.queued()  # taken in this pass too, without the checks above in between
                while item is not None:
                    if self._take(item):
                        ended = True
                        break
                    if queued <= 0 or self._stop:
                        break
                    queued -= 1
                    item = self.capture.get(0.0)
                if ended:
                    break
                if self._loop is not None:
                    self.capture.want(self._loop.frames_wanted())
        finally:
            self.notifier.notify("STOPPING=1")
            self.capture.stop(SHUTDOWN_CAPTURE_S)
            for event in self.detector.flush():
                self._emit(event)
            self._metrics(time.monotonic())
            self.sink.stop(SHUTDOWN_OUTBOX_S)
        log.info("stopped (%s): %d windows, %d events", "end of input" if ended else "failure" if failure else
                 "signal", self.windows, self.events)
        return EXIT_UNEXPECTED if failure else 0

    def _take(self, item) -> bool:
        """One item from the capture thread through the window loop; True at the end of a file."""
        generation, chunk, onset = item
        if generation != self._generation:
            self._new_loop(generation)
        if chunk is None:  # end of a file: let the last windows out
            self._process(self._loop.end(onset))
            return True
        self.stats.audio_s += chunk.size / (self.capture.source.rate_hz * self.capture.source.channels)
        self._process(self._loop.feed(chunk, onset))
        return False

    def _end_what_was_left_open(self) -> None:
        """Events the previous run left open (it was killed, or lost power) get their end now, marked cut short
        and dated when that run was last known alive, so no state stays ON for a sound that is long over. One
        that cannot be ended (not an event, a time no date can hold: 1e308, NaN) is skipped with a log line and
        counted in skipped_open_events: nothing in the spool may stop a start."""
        self.skipped_open_events = 0
        open_events, last_alive = self.sink.recovered_open_events()
        if not open_events:
            return
        try:
            iso(float(last_alive or 0.0))  # a time a date can hold (not NaN, not 1e308)
        except (TypeError, ValueError, OverflowError, OSError):
            log.error("spool: the previous run's last sign of life is no time (%.40r): its open events end where "
                      "they began", last_alive)
            last_alive = 0.0
        for p in open_events:
            try:
                start = Event.from_dict(p)
                end = max(start.start_ts, float(last_alive or start.start_ts))
                event = dataclasses.replace(start, type="end", end_ts=end, duration_s=end - start.start_ts,
                                            device_id=start.device_id or self.device_id, cut_short=True)
                numbers = [getattr(event, f) for f in ("start_ts", "end_ts", "duration_s", "peak_score",
                                                       "mean_score", "level_dbfs")]
                if not all(math.isfinite(n) for n in numbers):
                    raise ValueError("a number that is not finite")
                payload = event.to_dict()  # the dates: a time beyond any calendar fails here
            except (TypeError, ValueError, OverflowError, OSError) as exc:
                self.skipped_open_events += 1
                log.error("spool: an open event was skipped (%s): %.200s", exc, p)
                continue
            log.warning("%s (started %s) was still open when the previous run stopped: ending it, cut short",
                        event.label, payload["start_time"])
            self._emit(event)

    def _new_loop(self, generation: int) -> None:
        src = self.capture.source
        p = self.classifier.params
        if self._loop is None or (src.rate_hz, src.channels) != (self._loop.rate_in_hz, self._loop.channels):
            self._loop = WindowLoop(p.window_samples, hop_samples_for(self.cfg.model.hop_seconds, p.sample_rate_hz),
                                    src.rate_hz, src.channels, p.sample_rate_hz,
                                    grid_samples=self.classifier.grid_samples, onset_lead_samples=self._onset_lead)
            if self.classifier.frontend is not None:
                self.classifier.frontend.reset()
        # stream sample 0 is "now" minus what the loop already holds: wall-clock timestamps for events
        self._t0 = self.clock() - self._loop.framer.ring.written / p.sample_rate_hz
        self._generation = generation

    def _process(self, windows) -> None:
        rate = self.classifier.params.sample_rate_hz
        window_s = self.classifier.params.window_samples / rate
        loop = self._loop
        stats = self.stats
        for window, start in windows:
            t_start = self._t0 + start / rate
            level = level_dbfs(window)
            gated = level < self.cfg.detector.min_level_dbfs
            if loop.extra:  # ends just after a sound began: only the fast onset looks at it
                if not gated:
                    stats.onset_windows += 1
                    scores = self._classify(window, start)
                    for event in self.detector.onset(scores, t_start, t_start + window_s, level):
                        self._emit(event)
                continue
            if gated:
                scores = self._silence
                stats.gated += 1
            else:
                scores = self._classify(window, start)
            stats.windows += 1
            stats.heard(level)
            for event in self.detector.update(scores, t_start, t_start + window_s, level):
                self._emit(event)
            if self.observer is not None:
                self.observer(self, level, gated)
            if gated:
                self._set_top(GATED_TOP)
            else:
                self._publish_top(scores, t_start)

    def _classify(self, window: np.ndarray, start: int) -> np.ndarray:
        """Scores of one window (the grid's or an onset's), its time kept for the metrics."""
        t = time.perf_counter()
        scores = self.delegates.classify(window, start)
        self.stats.invoked(time.perf_counter() - t)
        return scores

    def _switched(self, old: Classifier, new: Classifier, why: str) -> None:
        """The delegate supervisor moved the stream to another model: stamp events, publish it now."""
        self.detector.with_fields(delegate=new.decision.delegate)
        self._metrics(time.monotonic())

    def _emit(self, event) -> None:
        self.stats.events += 1
        self.sink.publish_event(event)  # with a spool, durable once this returns
        log.info("%s %s (peak %.2f)", event.type, event.label, event.peak_score)
        if event.label in self.state_labels:
            self.sink.set_state(event.label, event.type == "start")

    def _set_top(self, top: int) -> None:
        if top != self._top:
            self._top = top
            self.sink.set_top(self.classifier.labels[top] if top >= 0 else "none")

    def _publish_top(self, scores: np.ndarray, t_start: float) -> None:
        self._set_top(int(np.argmax(scores)))
        m = self.cfg.mqtt
        if m.scores and t_start - self._last_scores >= m.scores_interval_seconds:
            self._last_scores = t_start
            self.sink.publish_scores({"t_start": round(t_start, 3), "top": self.classifier.top(scores, m.scores_top_k)})

    def metrics(self) -> dict:
        return self.stats.payload(self.capture, self.classifier, self.delegate_switches,
                                  self._loop.framer.skipped_windows if self._loop else 0, self.sink)

    def _metrics(self, now: float) -> None:
        self._last_metrics = now
        m = self.metrics()
        self.sink.publish_metrics(m)
        log.info("metrics: %d windows, p50 %.2f ms, rtf %.4f, queue %d, dropped %d, overruns %d",
                 m["windows"], m["inference_p50_ms"], m["real_time_factor"], m["queue_depth"], m["dropped_events"],
                 m["overruns"])


def install_signal_handlers(daemon: Daemon) -> None:
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
