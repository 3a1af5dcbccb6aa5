"""The Source interface and the capture thread that keeps a source running.

A source's blocking `read()` returns interleaved int16 PCM (or None at the end of a file). The capture thread
calls it, hands chunks to the processing loop through a bounded queue (Handoff), and reopens a lost device with
backoff. The processing loop never waits on a device: when no audio arrives for `stall_seconds`, it declares a
stall and starts a fresh capture thread (a read blocked inside the driver cannot be interrupted, only abandoned).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Protocol

import numpy as np

from ..config import AudioConfig
from ..core.backoff import jitter
from ..core.onsets import StreamOnsets

log = logging.getLogger("edge.audio")

EMPTY = np.zeros(0, np.int16)
AHEAD_S = 1.0  # a live source that has delivered this much more audio than time has passed is not real time


class SourceLost(Exception):
    """The device went away; the capture thread reopens it. `retry_after` (seconds): wait this long before the
    next try instead of the back-off (a camera that refuses the login or does not answer is retried slowly)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Source(Protocol):
    """What the capture thread needs of a source (ALSA, WAV replay, stdin: one file each in edge/audio/)."""

    name: str
    rate_hz: int  # what the device actually opened with; may change on reopen
    channels: int
    overruns: int

    def open(self) -> None:
        """Start delivering audio; raise SourceLost when the device is not there (it is retried)."""

    def read(self) -> np.ndarray | None:
        """Block for the next chunk of interleaved int16 PCM; None at the end of a file; SourceLost."""

    def close(self) -> None:
        """Release the device."""


class Handoff:
    """The bounded queue from one capture thread to the processing loop. The loop says how many frames it needs
    before its next window (`want`); the capture thread rings the loop's `bell` (one for every source of a
    daemon) once that much has arrived, at the end of a file, at a new device generation, where a sound began or
    when the queue is full, not at every read: at the default hop two wake-ups a second per source instead of one
    per 64 ms read. Once woken the loop takes everything queued (take()).

    A live source (`live`: a microphone, a camera, delivering at the pace of the clock) never waits for room: when
    the queue is full its oldest chunk is dropped and counted (`dropped_frames`), so a loop that fell behind loses
    the oldest audio, not the newest, and capture goes on. A file, a pipe, or a device that delivers faster than
    real time (an ALSA file plugin) waits for room instead: nothing of a recording is skipped."""

    def __init__(self, depth: int, bell: threading.Event | None = None, live: bool = False):
        self.depth = depth
        self.bell = bell if bell is not None else threading.Event()
        self.live = live
        self._items: collections.deque = collections.deque()  # (item, frames)
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self.wanted = 0  # frames the loop needs before it wants to be woken (0: every chunk)
        self._arrived = 0  # frames queued since the loop last emptied the queue
        self._generation = -1
        self.dropped_frames = 0  # live audio dropped because the loop did not take it in time
        self.last_put = time.monotonic()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: tuple, frames: int, timeout_s: float, urgent: bool = False) -> bool:
        """Queue an item, (generation, chunk, onset), holding `frames` frames (chunk None: the end of a file);
        `urgent`: wake the loop now (a sound began in it). False when the queue stayed full for timeout_s."""
        with self._lock:
            while len(self._items) >= self.depth:
                if self.live and self._items[0][0][1] is not None:
                    self.dropped_frames += self._items.popleft()[1]
                    break
                if not self._room.wait(timeout_s):
                    return False
            self._items.append((item, frames))
            self._arrived += frames
            self.last_put = time.monotonic()
            if item[0] != self._generation or item[1] is None or len(self._items) >= self.depth:
                urgent = True
                self._generation = item[0]
            if urgent or self._arrived >= self.wanted:
                self.bell.set()
            return True

    def take(self):
        """The oldest queued item, or None (never waits)."""
        with self._lock:
            if not self._items:
                self._arrived = 0
                return None
            item = self._items.popleft()[0]
            if len(self._items) == self.depth - 1:
                self._room.notify()
            if not self._items:  # the loop has all of it: count again towards what it wants next
                self._arrived = 0
            return item


class Capture:
    """Runs a source's blocking reads in a thread. The processing loop takes what arrived (`take()`), says how
    many frames it needs before its next window (`want(frames)`) and calls `check_stall()` on every pass; it
    sleeps on the handoff's bell, shared by every source of a daemon.

    Whether the source delivers is kept true for the loop to report: `problem` (why not, one line, "" while it
    delivers), `gaps` (times it stopped delivering) and `gap_s` (how long in all, the current gap included)."""

    def __init__(self, source, cfg: AudioConfig, depth: int = 64, bell: threading.Event | None = None):
        self.source = source
        self.cfg = cfg
        self.handoff = Handoff(depth, bell, live=cfg.live)
        self.reopens = 0
        self.stalls = 0
        self.generation = 0  # bumped when the device (re)opens: its rate may have changed
        self.ended = False
        self.failed = ""  # set when the capture thread died of an error that reopening cannot fix
        self._failed_at = 0.0
        self.problem = ""
        self.gaps = 0
        self._gap_total = 0.0
        self._down_since: float | None = None
        self._waiting = False  # the thread waits to retry a lost source: no stall to declare
        # (generation, unix time its first frame was recorded): the loop dates the stream from the capture's clock,
        # not from when it got round to the first chunk (a busy loop would date a whole stream late)
        self.first_audio: tuple[int, float] = (-1, 0.0)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_audio = time.monotonic()
        # > 0: find where sounds begin (edge.core.onsets) as audio arrives, at least once per this many seconds
        # (the onset window's lead), pass it on with the chunk and wake the loop for it: the extra onset window is
        # due sooner than the hop grid's
        self.onset_lead_seconds = 0.0

    @property
    def gap_s(self) -> float:
        down = self._down_since
        return self._gap_total + (time.monotonic() - down if down is not None else 0.0)

    def _down(self, why: str) -> None:
        self.problem = why
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.gaps += 1

    def _up(self) -> None:
        down = self._down_since
        if down is not None:
            self._down_since = None
            self._gap_total += time.monotonic() - down
            log.info("%s: audio again after %.1f s", self.source.name, time.monotonic() - down)
        self.problem = ""

    def start(self) -> None:
        self._stop.clear()
        thread = threading.Thread(target=self._run_guarded, name="capture", daemon=True)
        self._thread = thread
        thread.start()

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as exc:  # not a lost device (that is SourceLost, and reopened): report it, do not spin
            self.failed = f"capture from {self.source.name} stopped: {exc.__class__.__name__}: {exc}"
            self._failed_at = time.monotonic()
            self._down(self.failed)
            log.error("%s", self.failed)

    def _current(self, me) -> bool:
        return not self._stop.is_set() and self._thread is me

    def _run(self) -> None:
        me = threading.current_thread()
        delay = self.cfg.reopen_min_seconds
        while self._current(me):
            try:
                self.source.open()
            except SourceLost as exc:
                delay = self._wait_to_retry(exc, delay, "retrying")
                continue
            delay = self.cfg.reopen_min_seconds
            self.generation += 1
            log.info("capturing from %s at %d Hz, %d channel(s)", self.source.name, self.source.rate_hz,
                     self.source.channels)
            try:
                if self._read_until_lost(me):
                    return
            except SourceLost as exc:
                self.reopens += 1
                if self._thread is me:  # abandoned after a stall: the device is the new thread's now
                    self.source.close()
                delay = self._wait_to_retry(exc, delay, "reopening")
        if self._thread is me:
            self.source.close()

    def _read_until_lost(self, me) -> bool:
        """Read and queue until the source is lost (SourceLost), stopped or abandoned; True at the end of a file."""
        src = self.source
        onsets = StreamOnsets(src.rate_hz, src.channels, round(self.onset_lead_seconds * src.rate_hz)) \
            if self.onset_lead_seconds > 0 else None
        live, handoff = self.cfg.live, self.handoff
        opened, frames = time.monotonic(), 0
        first = True
        while self._current(me):
            chunk = src.read()
            if chunk is None:
                self.ended = True
                # what is still held is looked at now: a sound that began in the last reads keeps its window
                self._put((self.generation, None, onsets.scan_held() if onsets is not None else -1), 0)
                return True
            if chunk.size:
                if self._down_since is not None or self.problem:
                    self._up()
                onset = onsets.add(chunk) if onsets is not None else -1
                n = chunk.size // src.channels
                if first:  # when this generation's first frame was recorded (a chunk comes once it is all there)
                    first = False
                    self.first_audio = (self.generation, time.time() - (n / src.rate_hz if live else 0.0))
                if live:  # a live source that runs ahead of the clock (an ALSA file plugin) is paced like a file
                    frames += n
                    handoff.live = frames / src.rate_hz - (time.monotonic() - opened) < AHEAD_S
                self._put((self.generation, chunk, onset), n, onset >= 0)
        return False

    def _wait_to_retry(self, exc: SourceLost, delay: float, doing: str) -> float:
        """Say why the source is gone, wait (its retry_after, else the back-off) and return the next back-off."""
        self._down(str(exc))
        wait = exc.retry_after if exc.retry_after is not None else delay * jitter(0.8, 1.2)
        log.warning("%s; %s in %.1f s", exc, doing, wait)
        self._waiting = True
        try:
            self._stop.wait(wait)
        finally:
            self._waiting = False
        return min(delay * 2, self.cfg.reopen_max_seconds)

    def _put(self, item, frames: int, urgent: bool = False) -> None:
        """Queue it. A file or pipe waits for room (it then waits for the loop); a live source never waits: the
        handoff drops its oldest chunk and counts it. A device not read in time overruns in the driver, where
        ALSA counts it (source.overruns). Nothing is dropped silently."""
        while not self._stop.is_set():
            if self.handoff.put(item, frames, 0.2, urgent):
                return

    def queued(self) -> int:
        """Items waiting in the hand-off now."""
        return len(self.handoff)

    def want(self, frames: int) -> None:
        """The processing loop needs this many more frames before its next window: wake it then, not before."""
        self.handoff.wanted = frames

    def take(self):
        """(generation, chunk, onset), (generation, None, onset) at the end of a file, or None when nothing is
        queued; never waits. `onset`: how many frames before the end of this chunk (at the end of a file: of the
        last one) a sound began; -1: none found, or not watched."""
        item = self.handoff.take()
        if item is not None:
            self._last_audio = time.monotonic()
        return item

    def check_stall(self) -> None:
        """No audio for stall_seconds from a source that is open: a read blocked in the driver is abandoned and a
        fresh capture thread opens the source again."""
        last = max(self._last_audio, self.handoff.last_put)
        if not self.ended and not self.failed and not self._waiting and \
                time.monotonic() - last > self.cfg.stall_seconds:
            self._restart_after_stall()

    def _restart_after_stall(self) -> None:
        self.stalls += 1
        why = f"no audio from {self.source.name} for {self.cfg.stall_seconds:.1f} s: the device stalled"
        log.warning("%s; reopening it", why)
        self._down(why)
        self._last_audio = time.monotonic()
        self.reopens += 1
        self.start()  # the old thread sees it is no longer the current one and exits when its read returns

    def request_stop(self) -> None:
        """Tell the thread to stop (stop() waits for it): a daemon tells every source first, then waits once."""
        self._stop.set()

    def revive(self) -> bool:
        """A capture thread that died of an error reopening cannot fix is started again, once its longest
        back-off has passed since (True when it was)."""
        if not self.failed or time.monotonic() - self._failed_at < self.cfg.reopen_max_seconds:
            return False
        log.warning("%s: starting its capture again", self.source.name)
        self.failed = ""
        self.reopens += 1
        self.start()
        return True

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        if thread is not None and thread.is_alive() and getattr(self.source, "close_unblocks", False):
            self.source.close()  # blocked in a read that closing releases (a stream's pipe)
