"""The always-on daemon: sources -> window loops -> one classifier -> detectors -> events -> sink, plus metrics.

One processing thread serves every source (listener.py: a source's capture, window loop, front end, detector and
topics): it moves what each capture thread queued into that source's ring, then classifies the oldest ready
window of all sources, onset windows first, on the one interpreter (an Edge TPU serves one process). Capture and
the sinks' network work run in their own threads and meet the loop only through bounded queues, so a slow broker,
a stalled device or a lost camera never stops the audio path of the others. The delegate in use is kept true by
edge/model/delegate.py's DelegateSupervisor.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import math
import os
import signal
import socket
import threading
import time

import numpy as np

from ..config import Config
from ..core.errors import EXIT_UNEXPECTED
from ..core.events import Event, iso
from ..model.classifier import Classifier
from ..model.delegate import DelegateSupervisor
from ..sinks.base import Sink
from ..sinks.jsonl import JsonLinesSink
from .clipping import deliver, make_writer, wait_for_clips
from .listener import Listener
from .metrics import LatencyRing, device_payload

log = logging.getLogger("edge.daemon")
SHUTDOWN_CAPTURE_S = 0.5  # SIGTERM to exit stays under 5 s: capture join + outbox wait + "offline"
SHUTDOWN_OUTBOX_S = 2.5
SHUTDOWN_CLIPS_S = 0.5  # the clip writer's last commit (the ends waited for their clips before: clipping.py)
WAIT_S = 0.5  # the loop sleeps until a window's worth of audio is there, or this long (stop, stall, metrics)
BATCH = 64  # windows classified per pass before the captures' queues are emptied again
TURN_STEP = 7919  # how far the turning order moves each pass (a prime: every source comes first in turn)


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
    def __init__(self, cfg: Config, classifier: Classifier, capture, sink: Sink | None = None,
                 clock=time.time, open_classifier=None, thresholds=None, observer=None, *,
                 state_labels=None, notifier: SystemdNotifier | None = None):
        """The loop and its parts. `capture`: one Capture (then `cfg` is the config of its one source: a config
        of [audio] alone, or a view of one source), or a list with one per source of cfg.sources, in order.
        `sink`: where events go (default: JSON lines on stdout); `thresholds`, `state_labels`: as the start-up
        worked them out, one value for one source or {source id: value} (default: worked out per source from the
        config and the bundle, no calibration file); `notifier`: systemd's (default: one that says nothing);
        `observer(listener, level_dbfs, gated)` is called after every grid window, once its detector has seen
        it."""
        self.cfg = cfg
        # how to load the model again with another delegate policy (the CPU fallback, the TPU retry)
        self.delegates = DelegateSupervisor(classifier, open_classifier or self.reopen_classifier, self._switched)
        self.sink = sink if sink is not None else JsonLinesSink()  # no sink configured: events on stdout
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.clock = clock
        self.device_id = cfg.device_id
        self.observer = observer
        self.silence = np.zeros(len(classifier.labels), np.float32)  # a gated window's scores
        self.invokes = LatencyRing()  # every window the classifier took, all sources
        self.bell = threading.Event()  # rung by every capture thread: audio is there
        self.clip_writer = make_writer(cfg)  # None: clips are off
        captures = list(capture) if isinstance(capture, (list, tuple)) else [capture]
        views = [cfg] if len(captures) == 1 else cfg.views()
        if len(views) != len(captures):
            raise ValueError(f"{len(captures)} captures for {len(views)} sources")
        for c in captures:
            c.handoff.bell = self.bell
        live = [k for k, view in enumerate(views) if view.audio.live]
        phases = {k: j / len(live) for j, k in enumerate(live)}  # live sources spread over the hop
        self.sources = [Listener(self, view, c, _of(thresholds, view.source_id), _of(state_labels, view.source_id),
                                 phases.get(k, 0.0), first=k == 0) for k, (view, c) in enumerate(zip(views, captures))]
        self._stop = False
        self._turn = 0
        self._tie_s = cfg.model.hop_seconds  # windows whose audio was there within one hop are of one age
        self.started = time.monotonic()
        self._last_metrics = time.monotonic()

    # -- what the loop counted (the metrics payload's names) ----------------------------------------------------
    @property
    def windows(self) -> int:
        return sum(s.stats.windows for s in self.sources)

    @property
    def gated(self) -> int:
        return sum(s.stats.gated for s in self.sources)

    @property
    def onset_windows(self) -> int:
        return sum(s.stats.onset_windows for s in self.sources)

    @property
    def events(self) -> int:
        return sum(s.stats.events for s in self.sources)

    @property
    def detector(self):
        """The first source's detector (the only one of a one-source daemon)."""
        return self.sources[0].detector

    @property
    def state_labels(self) -> set:
        return self.sources[0].state_labels

    @property
    def thresholds(self):
        return self.sources[0].thresholds

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
        self.bell.set()

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self) -> int:
        self.sink.start()
        if self.clip_writer is not None:
            self.clip_writer.start()
        self._end_what_was_left_open()
        for s in self.sources:
            s.capture.start()
        self.notifier.notify("READY=1\nSTATUS=listening" + (f" to {len(self.sources)} sources"
                                                             if len(self.sources) > 1 else ""))
        log.info("%s", self.classifier.describe())
        ended = False
        failure = ""
        try:
            while not self._stop:
                now = time.monotonic()
                failure = self._failure()
                if failure:  # a thread died: no more watchdog pings, exit 1, and systemd starts a fresh process
                    log.error("stopping: %s", failure)
                    self.notifier.notify(f"STATUS=failed: {failure}")
                    break
                self.notifier.ping(now)
                if now - self._last_metrics >= self.cfg.metrics.interval_seconds:
                    self._metrics(now)
                self.sink.flush()  # what this pass queued goes out while the loop sleeps
                self.bell.wait(WAIT_S)
                self.bell.clear()
                self._serve()
                if self.clip_writer is not None:  # ends whose clips are written go out with them
                    deliver(self.sources, self.clip_writer, _send_without_state)
                if all(s.ended for s in self.sources):
                    ended = True
                    break
        finally:
            self._shut_down()
        log.info("stopped (%s): %d windows, %d events", "end of input" if ended else "failure" if failure else
                 "signal", self.windows, self.events)
        return EXIT_UNEXPECTED if failure else 0

    def _serve(self) -> None:
        """One pass: every source's queued audio into its ring, then the ready windows of all sources, the
        oldest first and onset windows before grid windows, at most BATCH of them (then the queues again).
        A window's age is counted in whole hops since its audio was there (at the start of the pass): windows of
        one age are served in an order that turns from pass to pass. Every source has about one window of each
        age, so each takes its turn at being served first instead of the same ones (those whose audio comes a
        little later in every hop) always waiting for all the others: under load every source waits alike."""
        sources = self.sources
        n, tie = len(sources), self._tie_s
        self._turn = turn = (self._turn + TURN_STEP) % n
        now = self.clock()
        ready = []
        for i, s in enumerate(sources):
            s.take_audio()
            s.capture.check_stall()
            s.say_status()
            due = s.due()
            if due is not None:
                ready.append(((due - now) // tie, (i - turn) % n, i))
        heapq.heapify(ready)
        clock = self.clock
        for _ in range(BATCH):
            if not ready or self._stop:
                return
            _, _, i = heapq.heappop(ready)
            s = sources[i]
            s.step()
            s.waited_since(clock())
            due = s.due()
            if due is None:  # a file's next chunks wait until its windows are taken: they go in now
                s.take_audio()
                due = s.due()
            if due is not None:
                heapq.heappush(ready, ((due - now) // tie, (i - turn) % n, i))
        if ready:
            self.bell.set()  # more is ready: the next pass comes at once

    def classify(self, window: np.ndarray, start: int, source: Listener) -> np.ndarray:
        """Scores of one window of `source` (the grid's or an onset's) on the shared classifier, timed."""
        t = time.perf_counter()
        scores = self.delegates.classify(window, start, source.frontend)
        spent = time.perf_counter() - t
        source.stats.busy_s += spent
        self.invokes.add(spent)
        return scores

    def _failure(self) -> str:
        """Why the daemon must stop: its sink died, or every source's capture did ("" else). A source whose
        capture died beside others that work is reported and started again after its longest back-off."""
        sink = self.sink.failure()
        if sink:
            return sink
        failed = [s.capture.failed for s in self.sources if s.capture.failed]
        if failed and len(failed) == len(self.sources):
            return failed[0]
        for s in self.sources:
            if s.capture.failed:
                s.revive()
        return ""

    def _shut_down(self) -> None:
        self.notifier.notify("STOPPING=1")
        for s in self.sources:
            s.capture.request_stop()
        deadline = time.monotonic() + SHUTDOWN_CAPTURE_S
        for s in self.sources:
            s.capture.stop(max(0.0, deadline - time.monotonic()))
        for s in self.sources:
            for event in s.detector.flush():
                s.emit(event)
            s.finish_clips()
        if self.clip_writer is not None:
            wait_for_clips(self.sources, self.clip_writer, _send_without_state)
            self.clip_writer.stop(SHUTDOWN_CLIPS_S)
        for s in self.sources:
            if s.id:
                self.sink.set_source_status(s.id, False)
        self._metrics(time.monotonic())
        self.sink.stop(SHUTDOWN_OUTBOX_S)

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
        by_id = {s.id: s for s in self.sources}
        for p in open_events:
            try:
                event = self._cut_short(p, last_alive)
                payload = event.to_dict()  # the dates: a time beyond any calendar fails here
            except (TypeError, ValueError, OverflowError, OSError) as exc:
                self.skipped_open_events += 1
                log.error("spool: an open event was skipped (%s): %.200s", exc, p)
                continue
            log.warning("%s (started %s) was still open when the previous run stopped: ending it, cut short",
                        event.label, payload["start_time"])
            source = by_id.get(event.source, self.sources[0] if len(self.sources) == 1 else None)
            if source is not None:
                source.emit(event)
            else:  # a source this config no longer has: its end still goes out
                self.sink.publish_event(event)

    def _cut_short(self, p: dict, last_alive) -> Event:
        start = Event.from_dict(p)
        end = max(start.start_ts, float(last_alive or start.start_ts))
        event = dataclasses.replace(start, type="end", end_ts=end, duration_s=end - start.start_ts,
                                    device_id=start.device_id or self.device_id, cut_short=True)
        numbers = [getattr(event, f) for f in ("start_ts", "end_ts", "duration_s", "peak_score", "mean_score",
                                               "level_dbfs")]
        if not all(math.isfinite(n) for n in numbers):
            raise ValueError("a number that is not finite")
        return event

    def _switched(self, old: Classifier, new: Classifier, why: str) -> None:
        """The delegate supervisor moved the streams to another model: stamp events, publish it now."""
        for s in self.sources:
            s.detector.with_fields(delegate=new.decision.delegate)
        self._metrics(time.monotonic())

    def metrics(self) -> dict:
        parts = {s.id: s.part() for s in self.sources}
        failed = next((s.capture.failed for s in self.sources if s.capture.failed), "")
        payload = device_payload(parts, self.invokes, self.classifier, self.delegate_switches, self.sink, failed,
                                 self.started)
        if self.clip_writer is not None:
            payload.update(self.clip_writer.stats())
        return payload

    def _metrics(self, now: float) -> None:
        self._last_metrics = now
        m = self.metrics()
        self.sink.publish_metrics(m)
        for sid, part in m.get("sources", {}).items():
            self.sink.publish_metrics(part, source=sid)
        log.info("metrics: %d windows, p50 %.2f ms, rtf %.4f, queue %d, dropped %d, overruns %d%s",
                 m["windows"], m["inference_p50_ms"], m["real_time_factor"], m["queue_depth"], m["dropped_events"],
                 m["overruns"], f", sources online {m['sources_online']}/{len(self.sources)}" if "sources" in m
                 else "")


def _send_without_state(source: Listener, event: Event) -> None:
    """An end that waited for its clip: its state went OFF when it ended."""
    source.send(event, state=False)


def _of(value, source_id: str):
    """One source's value of a per-source argument: {source id: value}, or the value itself."""
    return value.get(source_id) if isinstance(value, dict) else value


def install_signal_handlers(daemon: Daemon) -> None:
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
