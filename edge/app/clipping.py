"""Clips in the daemon: each source opens a clip when an event starts and holds the event's end until its clip is
written, so the end carries it (file, seconds, bytes, sha256); the one writer thread (edge/sinks/clipwriter.py)
does the encoding and the disk. With [clips] off nothing here runs.

    start event -> ClipTaps.open (pre-roll from the ring) -> after each grid window: audio to the writer in blocks
    end event   -> held; the clip's last sample fixed (end + post) -> writer -> record -> the end goes out with it
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from ..config import Config, clips_folder
from ..core.clipparams import SPEECH_CLASSES, ClipParams
from ..core.cliptap import ClipTaps, Tap
from ..core.events import Event
from ..sinks.clipstore import ClipStore
from ..sinks.clipwriter import BLOCK, OFF, SKIPPED_QUEUE, ClipWriter, clip_format

log = logging.getLogger("edge.clips")
SHUTDOWN_S = 1.5  # at a stop, how long the ends wait for their clips
# in the record, not in the end event's clip (the event has them already)
RECORD_ONLY = ("device_id", "written_ts", "event_id", "source", "label", "event_start_ts", "event_end_ts")


def history_seconds(params: ClipParams, window_s: float, confirm_s: float) -> float:
    """What the ring keeps behind its windows for a clip's pre-roll: pre_seconds, and the time from an event's
    first window to the window that confirms it (its min_duration, the window itself, a hop of slack)."""
    return params.pre_seconds + window_s + confirm_s + 1.0


def make_writer(cfg: Config) -> ClipWriter | None:
    """The daemon's clip writer (started with the daemon: a folder that cannot be written then turns clips off
    with one warning, and events go on); None when clips are off."""
    params = cfg.clips
    if not params.enabled:
        return None
    fmt, _ = clip_format(params.format)  # why it is not the one asked for: the start-up's clips step says it
    return ClipWriter(ClipStore(clips_folder(params), params), params, fmt)


class SourceClips:
    """One source's clips (listener.py calls started / ended / after_window / restarted / finish)."""

    def __init__(self, listener, writer: ClipWriter, window: int, hop: int, rate: int, history: int):
        self.listener = listener
        self.writer = writer
        self.params = writer.params
        labels = listener.daemon.classifier.labels
        speech = np.array([i for i, name in enumerate(labels) if name in SPEECH_CLASSES], np.int64)
        self.taps = ClipTaps(self.params, speech, window, hop, rate, history)
        self.rate = rate
        self.held: dict[str, Event] = {}  # ends waiting for their clip
        self.pending: set[str] = set()  # events with a clip under way (until their end has gone out)
        self.early: dict[str, dict] = {}  # clips done before their event ended (withheld at once, skipped)
        self.verdicts: dict[str, str] = {}  # events decided without a clip (a speech label, no speech classes)
        self.records: dict[str, dict] = {}  # what each open clip's record says so far

    def started(self, event: Event, ring, t0: float) -> None:
        p = self.params
        if not p.wanted(event.label):
            if event.label in SPEECH_CLASSES:
                self.verdicts[event.event_id] = "withheld: speech label"
            return
        if self.writer.problem:
            self.verdicts[event.event_id] = OFF  # why: once in the log, and metrics' clips_problem
            return
        if p.filtered(event.label) and not self.taps.hears_speech:
            self.verdicts[event.event_id] = "withheld: the model has no speech class"
            return
        tap = self.taps.open(event.event_id, event.label, round((event.start_ts - t0) * self.rate), ring.oldest())
        self.records[event.event_id] = {
            "event_id": event.event_id, "source": event.source, "label": event.label, "device_id": event.device_id,
            "start_ts": round(t0 + tap.begin / self.rate, 3), "event_start_ts": event.start_ts,
            "event_end_ts": None, "offset_s": round((tap.event_start - tap.begin) / self.rate, 3),
            "sample_rate": self.rate}
        self.pending.add(event.event_id)
        self.writer.begin(event.event_id)

    def ended(self, event: Event, t0: float) -> Event | None:
        """The end to publish now (with what became of its clip, or as it is: no clip for this label), or None:
        it is held until its clip is written."""
        verdict = self.verdicts.pop(event.event_id, None)
        if verdict is not None:
            return dataclasses.replace(event, clip={"status": verdict})
        if event.event_id not in self.pending:
            return event
        self.taps.close(event.event_id, round((event.end_ts - t0) * self.rate))
        if event.event_id in self.records:
            self.records[event.event_id]["event_end_ts"] = event.end_ts
        early = self.early.pop(event.event_id, None)
        if early is not None:
            self.pending.discard(event.event_id)
            return self._with(event, early)
        self.held[event.event_id] = event
        return None

    def after_window(self, start: int, scores: np.ndarray, framer) -> None:
        taps = self.taps
        taps.note(start, scores)
        if taps.open_taps:
            self._take(framer.next_grid_start, framer)

    def _take(self, horizon: int, framer) -> None:
        ring = framer.ring

        def send(tap: Tap, a: int, b: int, muted) -> None:
            self._send(tap, a, b, muted, ring)
        for tap in self.taps.take(min(horizon, ring.written), ring.oldest(), send):
            self._done(tap)

    def _send(self, tap: Tap, a: int, b: int, muted, ring) -> None:
        writer = self.writer
        while a < b and not tap.status:
            index = writer.block()
            if index is None:  # the writer is behind: this clip goes, the audio never waits
                tap.status = SKIPPED_QUEUE
                return
            n = min(BLOCK, b - a)
            block = writer.pool[index, :n]
            ring.copy_to(a, block)
            for x, y in muted:
                if x < a + n and y > a:
                    block[max(x, a) - a:min(y, a + n) - a] = 0
            writer.audio(tap.event_id, index, n)
            a += n

    def _done(self, tap: Tap) -> None:
        record = self.records.pop(tap.event_id)
        record["seconds"] = round((tap.pos - tap.begin) / self.rate, 3)
        if tap.status:  # decided here (withheld, skipped): the end need not wait for the writer's commit
            record.update(status=tap.status, seconds=0.0)
            self.writer.drop(tap.event_id, record)
            self._decided(tap.event_id, record)
            return
        cut = f"too long: cut at {self.params.max_seconds:g} s" if tap.too_long else "kept"
        self.writer.finish(tap.event_id, {**record, "status": cut})

    def _decided(self, event_id: str, record: dict) -> None:
        """What became of a clip is known: its end goes out now if it is waiting, else takes it when it comes."""
        event = self.held.pop(event_id, None)
        if event is None:
            self.early[event_id] = record
            return
        self.pending.discard(event_id)
        self.listener.send(self._with(event, record), state=False)

    def restarted(self) -> None:
        """The source's stream began again (a new ring): clips still open cannot go on."""
        for tap in list(self.taps.open_taps.values()):
            tap.status = "skipped: the source restarted"
            self._done(tap)
        self.taps.open_taps.clear()

    def finish(self, framer) -> None:
        """The daemon stops (or a file ended): every open clip ends with the audio there is."""
        for tap in self.taps.open_taps.values():
            tap.end_known = True
            tap.limit = min(tap.limit, framer.next_grid_start, framer.ring.written)
        self._take(framer.ring.written, framer)

    def result(self, record: dict) -> Event | None:
        """The writer's record of one of this source's clips: the held end that now goes out with it, or None
        (its event has not ended yet: the end takes it when it comes)."""
        event_id = record.get("event_id", "")
        event = self.held.pop(event_id, None)
        if event is None:
            if event_id in self.pending:
                self.early[event_id] = record
            return None
        self.pending.discard(event_id)
        return self._with(event, record)

    @staticmethod
    def _with(event: Event, record: dict) -> Event:
        clip = {k: v for k, v in record.items() if k not in RECORD_ONLY}
        return dataclasses.replace(event, clip=clip)

    def release(self) -> list[Event]:
        """Ends still held at the last moment of a stop: out without their clip."""
        out = [dataclasses.replace(e, clip={"status": "skipped: the daemon stopped first"})
               for e in self.held.values()]
        self.held.clear()
        self.pending.clear()
        return out


def wait_for_clips(sources, writer: ClipWriter, emit, timeout_s: float = SHUTDOWN_S) -> None:
    """At a stop: the held ends go out as their clips are written, for up to `timeout_s`; then the rest."""
    deadline = time.monotonic() + timeout_s
    while any(s.clips.held for s in sources if s.clips) and time.monotonic() < deadline:
        deliver(sources, writer, emit)
        time.sleep(0.02)
    deliver(sources, writer, emit)
    for s in sources:
        if s.clips:
            for event in s.clips.release():
                emit(s, event)


def deliver(sources, writer: ClipWriter, emit) -> None:
    """The writer's finished clips: each held end goes out with its clip (emit(source, event))."""
    results = writer.results()
    if not results:
        return
    by_id = {s.id: s for s in sources}
    for record in results:
        s = by_id.get(record.get("source", ""))
        if s is not None and s.clips is not None:
            event = s.clips.result(record)
            if event is not None:
                emit(s, event)
