"""One source of the daemon: everything that is per stream.

A Listener owns its source's capture thread, window loop (ring, framer, onsets), front end (its own patches,
the shared classifier's scratch), level gate, detector and thresholds, top class, counters and topics. The
daemon's scheduler (daemon.py) moves each source's audio into its ring (take_audio), then hands the shared
classifier the oldest ready window of all sources, onset windows first (due, step). A source that stalls or is
lost costs only its own windows; its status goes offline and back online on its own topics.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..config import Config
from ..core.detector import Detector, DetectorParams, level_dbfs
from ..core.errors import ConfigError, InputError
from ..core.stream import WindowLoop, hop_samples_for
from ..core.thresholds import ThresholdLayers
from .clipping import SourceClips, history_seconds
from .metrics import LoopMetrics
from .threshold_sources import bundle_thresholds, state_labels_for, threshold_layers

log = logging.getLogger("edge.daemon")
GATED_TOP = -2  # below the level gate nothing was classified: "top" reads "none"


class Listener:
    def __init__(self, daemon, cfg: Config, capture, thresholds: ThresholdLayers | None = None,
                 state_labels: list[str] | None = None, phase: float = 0.0, first: bool = True):
        """`cfg`: the config as this source sees it (Config.views()); `thresholds`, `state_labels` as the
        start-up worked them out (default: here, from `cfg` and the bundle, with no calibration file); `phase`:
        where in the hop this source's windows start (0 to 1: the daemon spreads its live sources over the hop,
        so their windows come due one after another instead of all at once); `first`: the daemon's first source."""
        self.phase = phase
        self.daemon = daemon
        self.cfg = cfg
        self.id = cfg.source_id
        self.capture = capture
        classifier = daemon.classifier
        self.thresholds = thresholds or threshold_layers(cfg, classifier.labels, bundle_thresholds(classifier))
        params = self._watch(classifier)
        if state_labels is None:
            state_labels = state_labels_for(cfg, classifier.labels, self.thresholds)
        self.state_labels = set(state_labels)  # the labels with an ON/OFF state
        self.stats = LoopMetrics()
        # this stream's own patches over the classifier's scratch; the first source takes the classifier's own
        # front end (a daemon with one source holds one, as before sources existed)
        self.frontend = classifier.frontend if first else classifier.new_frontend()
        self.sink = daemon.sink
        self._loop: WindowLoop | None = None
        self._generation = -1
        self._t0 = 0.0
        self._dropped = 0  # the capture's dropped frames already accounted for in _t0
        self._onset_lead = round(params.onset_lead_seconds * classifier.params.sample_rate_hz)
        capture.onset_lead_seconds = params.onset_lead_seconds
        self._top = -1  # nothing published yet
        self._last_scores = 0.0
        self.ending = False  # the end of a file arrived: its last windows go out, then the pad
        self._padded = False
        self.ended = False  # and every window of it was taken
        self.online: bool | None = None  # what the source's status topic says (None: not said yet)
        self.clips: SourceClips | None = None
        self._history = 0  # samples the ring keeps behind its windows: a clip's pre-roll
        if daemon.clip_writer is not None:
            p = classifier.params
            rate, window = p.sample_rate_hz, p.window_samples
            self._history = round(rate * history_seconds(cfg.clips, window / rate, params.min_duration_seconds))
            self.clips = SourceClips(self, daemon.clip_writer, window,
                                     hop_samples_for(cfg.model.hop_seconds, rate), rate, self._history)

    def _watch(self, classifier) -> DetectorParams:
        """The detector, at the layers' thresholds (with no allow list a trained bundle's own labels are the ones
        watched); the parameters it runs with."""
        params = self.thresholds.apply(self.cfg.detector)
        fields = {"device_id": self.cfg.device_id, "model": classifier.model_name,
                  "delegate": classifier.decision.delegate, "source": self.id}
        try:
            self.detector = Detector(classifier.labels, params, fields)
        except InputError as exc:  # an unknown label in [detector]
            raise ConfigError(f"{self.cfg.path}: {self.cfg.where}{exc}") from None
        return params

    # -- audio in ----------------------------------------------------------------------------------------------
    def take_audio(self) -> None:
        """What the capture thread queued, into the ring, while none of this source's windows waits. A live
        source's queue is also taken down to half its depth when the classifier falls behind (the ring then
        skips the oldest grid windows, counted), so its capture never waits; a file's (or a source that runs ahead
        of the clock) waits instead, and nothing of the recording is skipped."""
        capture = self.capture
        handoff = capture.handoff
        while not self.ending:
            if self._loop is not None and self._loop.ready() and \
                    not (handoff.live and len(handoff) >= handoff.depth // 2):
                break
            item = capture.take()
            if item is None:
                break
            self._feed(item)
        if self._loop is not None:
            capture.want(self._loop.frames_wanted())

    def _feed(self, item) -> None:
        generation, chunk, onset = item
        if generation != self._generation:
            self._new_loop(generation)
        if chunk is None:  # end of a file: its last windows, then the pad
            self._loop.finish(onset)
            self.ending = True
            return
        dropped = self.capture.handoff.dropped_frames
        if dropped != self._dropped:  # the audio before this chunk skipped ahead: so does the clock
            self._t0 += (dropped - self._dropped) / self._loop.rate_in_hz
            self._dropped = dropped
        src = self.capture.source
        self.stats.audio_s += chunk.size / (src.rate_hz * src.channels)
        self._loop.push(chunk, onset)

    def _new_loop(self, generation: int) -> None:
        src = self.capture.source
        classifier = self.daemon.classifier
        p = classifier.params
        if self._loop is None or (src.rate_hz, src.channels) != (self._loop.rate_in_hz, self._loop.channels):
            hop = hop_samples_for(self.cfg.model.hop_seconds, p.sample_rate_hz)
            # the phase in whole periods: every source's windows then end at the same places within its reads, so
            # none waits longer than the others for the read that completes its window
            period = max(1, self.cfg.audio.period_frames * p.sample_rate_hz // src.rate_hz)
            self._loop = WindowLoop(p.window_samples, hop, src.rate_hz, src.channels, p.sample_rate_hz,
                                    grid_samples=classifier.grid_samples, onset_lead_samples=self._onset_lead,
                                    offset_samples=int(self.phase * max(1, hop // period)) * period,
                                    history_samples=self._history)
            if self.frontend is not None:
                self.frontend.reset()
        if self.clips is not None and self._generation >= 0:
            self.clips.restarted()
        # stream sample 0 is now, less how long ago a live source's first frame was recorded (the capture thread
        # saw it: a busy loop would date a whole stream late), less what the loop already holds: wall-clock
        # timestamps for events and window latencies
        seen, at = self.capture.first_audio
        ago = max(0.0, time.time() - at) if seen == generation and self.cfg.audio.live else 0.0
        self._t0 = self.daemon.clock() - ago - self._loop.framer.ring.written / p.sample_rate_hz
        self._dropped = self.capture.handoff.dropped_frames
        self._generation = generation

    # -- the scheduler's side ----------------------------------------------------------------------------------
    def due(self) -> float | None:
        """When the audio of this source's next window was all there (wall clock, s), less a day for an onset
        window (they go first); None when no window is ready."""
        loop = self._loop
        if loop is None:
            return None
        if not loop.ready():
            if self.ending:
                if not self._padded:
                    self._padded = True
                    loop.pad()
                    return self.due()
                self.ended = True
            return None
        end, extra = loop.framer.next_window_end()
        return self._t0 + end / loop.framer.rate_hz - (86400.0 if extra else 0.0)

    def step(self) -> None:
        """Classify this source's next window (due() said one is ready) and act on its scores."""
        framer = self._loop.framer
        window = framer.next_window()
        if window is None:
            return
        d, stats = self.daemon, self.stats
        rate = framer.rate_hz
        start = framer.window_start
        t_start = self._t0 + start / rate
        t_end = t_start + framer.window_samples / rate
        level = level_dbfs(window)
        gated = level < self.cfg.detector.min_level_dbfs
        if framer.extra:  # ends just after a sound began: only the fast onset looks at it
            if not gated:
                stats.onset_windows += 1
                scores = d.classify(window, start, self)
                for event in self.detector.onset(scores, t_start, t_end, level):
                    self.emit(event)
            return
        if gated:
            scores = d.silence
            stats.gated += 1
        else:
            scores = d.classify(window, start, self)
        stats.windows += 1
        stats.heard(level)
        for event in self.detector.update(scores, t_start, t_end, level):
            self.emit(event)
        if self.clips is not None:
            self.clips.after_window(start, scores, framer)
        if d.observer is not None:
            d.observer(self, level, gated)
        if gated:
            self._set_top(GATED_TOP)
        else:
            self._publish_top(scores, t_start)

    def waited_since(self, now: float) -> None:
        """The window just classified: how long its audio had been there (the fairness figure)."""
        framer = self._loop.framer
        self.stats.waited.add(max(0.0, now - self._t0 - (framer.window_start + framer.window_samples)
                                  / framer.rate_hz))

    def emit(self, event) -> None:
        """An event of this source out: published (with a spool, durable once this returns) and its state set.
        With clips on, an end whose clip is being written waits for it (its state goes OFF now)."""
        clips = self.clips
        if clips is not None and event.type == "end":
            out = clips.ended(event, self._t0)
            if out is None:
                self._set_state_of(event.label, False)
                return
            event = out
        self.send(event)
        if clips is not None and event.type == "start":
            clips.started(event, self._loop.framer.ring, self._t0)

    def send(self, event, state: bool = True) -> None:
        self.stats.events += 1
        self.sink.publish_event(event)
        log.info("%s%s %s (peak %.2f)%s", f"{self.id}: " if self.id else "", event.type, event.label,
                 event.peak_score, f", clip {event.clip['status']}" if event.clip else "")
        if state:
            self._set_state_of(event.label, event.type == "start")
        if event.clip and event.clip.get("file"):
            self.sink.publish_clip({**event.clip, "event_id": event.event_id},
                                   str(self.clips.writer.store.folder / event.clip["file"]))

    def finish_clips(self) -> None:
        """At a stop, once the detector's ends are out: the clips still open end with the audio there is."""
        if self.clips is not None and self._loop is not None:
            self.clips.finish(self._loop.framer)

    def _set_state_of(self, label: str, on: bool) -> None:
        if label in self.state_labels:
            self.sink.set_state(label, on, source=self.id)

    def _set_top(self, top: int) -> None:
        if top != self._top:
            self._top = top
            self.sink.set_top(self.daemon.classifier.labels[top] if top >= 0 else "none", source=self.id)

    def _publish_top(self, scores: np.ndarray, t_start: float) -> None:
        self._set_top(int(np.argmax(scores)))
        m = self.cfg.mqtt
        if m.scores and t_start - self._last_scores >= m.scores_interval_seconds:
            self._last_scores = t_start
            self.sink.publish_scores({"t_start": round(t_start, 3),
                                      "top": self.daemon.classifier.top(scores, m.scores_top_k)}, source=self.id)

    # -- what it reports -------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self.daemon.request_stop()

    def revive(self) -> None:
        """Its capture died beside sources that work: start it again after its longest back-off."""
        self.capture.revive()

    def say_status(self) -> None:
        """The source's status topic follows whether audio arrives (named sources only)."""
        online = not (self.capture.problem or self.capture.failed)
        if online != self.online:
            self.online = online
            if self.id:
                self.sink.set_source_status(self.id, online)

    def missed_windows(self) -> int:
        """Grid windows never classified: skipped by the ring when the classifier fell behind, and those the
        dropped live audio would have made."""
        loop = self._loop
        if loop is None:
            return 0
        framer = loop.framer
        dropped = self.capture.handoff.dropped_frames * framer.rate_hz // max(1, framer.rate_in_hz)
        return framer.skipped_windows + dropped // framer.hop_samples

    def part(self) -> dict:
        return self.stats.part(self.capture, self.missed_windows())
