"""The always-on daemon: capture -> framer -> classifier -> detector -> events -> MQTT, plus metrics.

The processing loop owns the framer, classifier and detector; capture and MQTT run in their own threads and
meet the loop only through bounded queues, so a slow broker or a stalled device never stops the audio path.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

import numpy as np

from .classifier import Classifier
from .config import Config, mqtt_password
from .detector import Detector, level_dbfs
from .errors import ConfigError, InputError
from .framing import Framer
from .pipeline import hop_samples_for
from .sources import Capture, make_source

log = logging.getLogger("edge.daemon")
SHUTDOWN_CAPTURE_S = 0.5  # SIGTERM to exit stays under 5 s: capture join + outbox wait + "offline"
SHUTDOWN_OUTBOX_S = 2.5
LATENCY_WINDOWS = 512  # the p50/p99 in metrics cover the last this many windows
TPU_RETRY_SECONDS = 300.0  # after falling back to the CPU, try the Edge TPU again this often


class SystemdNotifier:
    """sd_notify without libsystemd: READY=1, WATCHDOG=1 and STATUS= on $NOTIFY_SOCKET."""

    def __init__(self):
        address = os.environ.get("NOTIFY_SOCKET", "")
        self._sock = None
        if address:
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_s = int(usec) / 2e6 if usec and usec.isdigit() else 0.0
        self._last = 0.0

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
    def __init__(self, cfg: Config, classifier: Classifier, capture: Capture, sink=None, clock=time.time,
                 open_classifier=None):
        self.cfg = cfg
        self.classifier = classifier
        # how to load the model again with another delegate policy (the CPU fallback, the TPU retry)
        self._open_classifier = open_classifier or (lambda delegate: Classifier.open(
            cfg.model.path or None, cfg.model.labels or None, delegate, cfg.model.threads, cfg.model.backend or None))
        self._tpu_retry_at: float | None = None
        self.capture = capture
        self.sink = sink
        self.clock = clock
        self.device_id = cfg.device_id
        decision = classifier.decision
        self.detector = Detector(classifier.labels, cfg.detector, f"{cfg.path}: ",
                                 {"device_id": self.device_id, "model": classifier.model_name,
                                  "delegate": decision.delegate})
        self.state_labels = {classifier.labels[i] for i in self.detector.watched} if cfg.detector.allow else set()
        self._stop = False
        self._framer: Framer | None = None
        self._generation = -1
        self._t0 = 0.0
        self._silence = np.zeros(len(classifier.labels), np.float32)
        self._latency_ms = np.zeros(LATENCY_WINDOWS, np.float32)
        self.windows = 0
        self.delegate_switches = 0
        self.gated = 0
        self.events = 0
        self._busy_s = 0.0
        self._audio_s = 0.0
        self._started = time.monotonic()
        self._last_metrics = time.monotonic()
        self._last_scores = 0.0
        self._top = -1
        self.notifier = SystemdNotifier()

    def request_stop(self, *_args) -> None:
        self._stop = True

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self) -> int:
        if self.sink is not None:
            self.sink.start()
        self.capture.start()
        self.notifier.notify("READY=1\nSTATUS=listening")
        log.info("%s", self.classifier.describe())
        ended = False
        try:
            while not self._stop:
                now = time.monotonic()
                self.notifier.ping(now)
                if now - self._last_metrics >= self.cfg.metrics.interval_seconds:
                    self._metrics(now)
                item = self.capture.get(0.2)
                if item is None:
                    continue
                generation, chunk = item
                if generation != self._generation:
                    self._new_framer(generation)
                if chunk is None:  # end of a file: let the last windows out
                    self._framer.finish()
                    self._drain()
                    self._framer.pad_to_complete()
                    self._drain()
                    ended = True
                    break
                self._framer.push(chunk)
                self._audio_s += chunk.size / (self.capture.source.rate_hz * self.capture.source.channels)
                self._drain()
        finally:
            self.notifier.notify("STOPPING=1")
            self.capture.stop(SHUTDOWN_CAPTURE_S)
            for event in self.detector.flush():
                self._emit(event)
            self._metrics(time.monotonic())
            if self.sink is not None:
                self.sink.stop(SHUTDOWN_OUTBOX_S)
        log.info("stopped (%s): %d windows, %d events", "end of input" if ended else "signal", self.windows,
                 self.events)
        return 0

    def _new_framer(self, generation: int) -> None:
        src = self.capture.source
        p = self.classifier.params
        if self._framer is None or (src.rate_hz, src.channels) != (self._framer.rate_in_hz, self._framer.channels):
            self._framer = Framer(p.window_samples, hop_samples_for(self.cfg.model.hop_seconds, p.sample_rate_hz),
                                  src.rate_hz, src.channels, p.sample_rate_hz,
                                  max(8192, self.cfg.audio.period_frames * 4))
            if self.classifier.frontend is not None:
                self.classifier.frontend.reset()
        # stream sample 0 is "now" minus what the framer already holds: wall-clock timestamps for events
        self._t0 = self.clock() - self._framer.ring.written / p.sample_rate_hz
        self._generation = generation

    def _drain(self) -> None:
        framer, classifier = self._framer, self.classifier
        rate = classifier.params.sample_rate_hz
        window_s = classifier.params.window_samples / rate
        while (window := framer.next_window()) is not None:
            t_start = self._t0 + framer.window_start / rate
            level = level_dbfs(window)
            if level < self.cfg.detector.min_level_dbfs:
                scores = self._silence
                self.gated += 1
            else:
                t = time.perf_counter()
                scores = self._classify(window, framer.window_start)
                spent = time.perf_counter() - t
                self._busy_s += spent
                self._latency_ms[self.windows % LATENCY_WINDOWS] = spent * 1e3
            self.windows += 1
            for event in self.detector.update(scores, t_start, t_start + window_s, level):
                self._emit(event)
            if self.sink is not None:
                self._publish_top(scores, t_start)

    def _classify(self, window: np.ndarray, start: int) -> np.ndarray:
        """Classify; if the Edge TPU fails mid-stream (a USB Coral unplugged), go on with the CPU model."""
        if self._tpu_retry_at is not None and time.monotonic() >= self._tpu_retry_at:
            self._retry_tpu()
        try:
            return self.classifier.classify(window, start)
        except (RuntimeError, ValueError) as exc:
            if self.classifier.decision.delegate != "edgetpu":
                raise
            self._switch(self._open_classifier("cpu"), f"Edge TPU invoke failed ({str(exc).splitlines()[0]}); "
                                                       f"on the CPU model until it is back")
            self._tpu_retry_at = time.monotonic() + TPU_RETRY_SECONDS
            return self.classifier.classify(window, start)

    def _retry_tpu(self) -> None:
        self._tpu_retry_at = time.monotonic() + TPU_RETRY_SECONDS
        try:
            candidate = self._open_classifier(self.cfg.model.delegate)
        except Exception as exc:  # still gone: stay on the CPU
            log.info("Edge TPU still unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            return
        if candidate.decision.delegate == "edgetpu":
            self._switch(candidate, "Edge TPU is back")
            self._tpu_retry_at = None

    def _switch(self, classifier: Classifier, why: str) -> None:
        log.warning("delegate: %s -> %s: %s", self.classifier.decision.delegate, classifier.decision.delegate, why)
        classifier.decision.reason = why
        self.classifier = classifier
        self.detector.with_fields(delegate=classifier.decision.delegate)
        self.delegate_switches += 1
        if self.sink is not None:
            self._metrics(time.monotonic())  # publish the change now, not at the next interval

    def _emit(self, event) -> None:
        self.events += 1
        log.info("%s %s (peak %.2f)", event.type, event.label, event.peak_score)
        if self.sink is None:
            print(event.to_json(), flush=True)
            return
        self.sink.publish_event(event)
        if event.label in self.state_labels:
            self.sink.set_state(event.label, event.type == "start")

    def _publish_top(self, scores: np.ndarray, t_start: float) -> None:
        top = int(np.argmax(scores))
        if top != self._top:
            self._top = top
            self.sink.set_top(self.classifier.labels[top])
        m = self.cfg.mqtt
        if m.scores and t_start - self._last_scores >= m.scores_interval_seconds:
            self._last_scores = t_start
            self.sink.publish_scores({"t_start": round(t_start, 3), "top": self.classifier.top(scores, m.scores_top_k)})

    def metrics(self) -> dict:
        n = min(self.windows - self.gated, LATENCY_WINDOWS)
        lat = self._latency_ms[:n] if n else self._silence[:1]
        capture, sink = self.capture, self.sink
        return {
            "windows": self.windows, "gated_windows": self.gated, "events": self.events,
            "inference_p50_ms": round(float(np.percentile(lat, 50)), 3),
            "inference_p99_ms": round(float(np.percentile(lat, 99)), 3),
            "real_time_factor": round(self._busy_s / self._audio_s, 5) if self._audio_s else 0.0,
            "overruns": capture.source.overruns,
            "skipped_windows": self._framer.skipped_windows if self._framer else 0,
            "stalls": capture.stalls, "reopens": capture.reopens,
            "delegate": self.classifier.decision.delegate, "delegate_reason": self.classifier.decision.reason,
            "model": self.classifier.model_name, "delegate_switches": self.delegate_switches,
            "mqtt_connected": sink.connected if sink else None,
            "reconnects": sink.reconnects if sink else 0,
            "queue_depth": sink.queue_depth if sink else 0,
            "delivered_events": sink.delivered if sink else 0,
            "dropped_events": sink.dropped_events if sink else 0,
            "dropped_messages": sink.dropped_other if sink else 0,  # scores/metrics/state extras, newest kept
            "refused_events": sink.refused if sink else 0,
            "uptime_s": round(time.monotonic() - self._started, 1),
        }

    def _metrics(self, now: float) -> None:
        self._last_metrics = now
        m = self.metrics()
        if self.sink is not None:
            self.sink.publish_metrics(m)
        log.info("metrics: %d windows, p50 %.2f ms, rtf %.4f, queue %d, dropped %d, overruns %d",
                 m["windows"], m["inference_p50_ms"], m["real_time_factor"], m["queue_depth"], m["dropped_events"],
                 m["overruns"])


def build(cfg: Config) -> Daemon:
    """Everything from the config, or ConfigError (exit 78) with one line."""
    from .mqtt import MqttSink

    m = cfg.model
    try:
        classifier = Classifier.open(m.path or None, m.labels or None, m.delegate, m.threads, m.backend or None)
    except InputError as exc:
        raise ConfigError(f"{cfg.path}: model: {exc}") from None
    try:
        capture = Capture(make_source(cfg.audio), cfg.audio)
    except InputError as exc:
        raise ConfigError(f"{cfg.path}: audio: {exc}") from None
    daemon = Daemon(cfg, classifier, capture)
    if cfg.mqtt.enabled:
        watched = sorted(daemon.state_labels)
        daemon.sink = MqttSink(cfg.mqtt, cfg.device_id, mqtt_password(cfg.mqtt, cfg.path), watched,
                               classifier.model_name)
    return daemon


def install_signal_handlers(daemon: Daemon) -> None:
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
