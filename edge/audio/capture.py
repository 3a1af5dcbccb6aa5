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


class SourceLost(Exception):
    """The device went away; the capture thread reopens it."""


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
    """The bounded queue from the capture thread to the processing loop. The loop says how many frames it needs
    before its next window (`want`); the capture thread wakes it once that much has arrived, at the end of a
    file, at a new device generation, where a sound began or when the queue is full, not at every read: at the
    default hop that is two wake-ups a second instead of one per 64 ms read. Once woken the loop takes everything
    queued."""

    def __init__(self, depth: int):
        self.depth = depth
        self._items: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self.wanted = 0  # frames the loop needs before it wants to be woken (0: every chunk)
        self._arrived = 0  # frames queued since the loop last emptied the queue
        self._urgent = False
        self._draining = False
        self._generation = -1
        self.last_put = time.monotonic()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: tuple, frames: int, timeout_s: float, urgent: bool = False) -> bool:
        """Queue an item, (generation, chunk, onset), holding `frames` frames (chunk None: the end of a file);
        `urgent`: wake the loop now (a sound began in it). False when the queue stayed full for timeout_s."""
        with self._lock:
            while len(self._items) >= self.depth:
                if not self._room.wait(timeout_s):
                    return False
            self._items.append(item)
            self._arrived += frames
            self.last_put = time.monotonic()
            if urgent or item[1] is None or item[0] != self._generation or len(self._items) >= self.depth:
                self._urgent = True
                self._generation = item[0]
            if self._urgent or self._arrived >= self.wanted:
                self._ready.notify()
            return True

    def get(self, timeout_s: float):
        """The next item; waits (up to timeout_s) only when the loop has taken everything and what arrived since
        is less than it wants. None when nothing is queued."""
        with self._lock:
            if not self._draining:
                if not (self._items and (self._urgent or self._arrived >= self.wanted)):
                    self._ready.wait(timeout_s)
                self._draining = True
            if not self._items:
                self._draining = False
                return None
            item = self._items.popleft()
            if len(self._items) == self.depth - 1:
                self._room.notify()
            if not self._items:
                self._draining = self._urgent = False
                self._arrived = 0
            return item


class Capture:
    """Runs a source's blocking reads in a thread; the processing loop calls `get()` and, to be woken only when
    a window's worth of audio is there, `want(frames)`."""

    def __init__(self, source, cfg: AudioConfig, depth: int = 64):
        self.source = source
        self.cfg = cfg
        self.handoff = Handoff(depth)
        self.reopens = 0
        self.stalls = 0
        self.generation = 0  # bumped when the device (re)opens: its rate may have changed
        self.ended = False
        self.failed = ""  # set when the capture thread died of an error that reopening cannot fix
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_audio = time.monotonic()
        # > 0: find where sounds begin (edge.core.onsets) as audio arrives, at least once per this many seconds
        # (the onset window's lead), pass it on with the chunk and wake the loop for it: the extra onset window is
        # due sooner than the hop grid's
        self.onset_lead_seconds = 0.0

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
            log.error("%s", self.failed)

    def _run(self) -> None:
        me = threading.current_thread()
        delay = self.cfg.reopen_min_seconds
        while not self._stop.is_set() and self._thread is me:
            try:
                self.source.open()
            except SourceLost as exc:
                log.warning("%s; retrying in %.1f s", exc, delay)
                self._stop.wait(delay * jitter(0.8, 1.2))
                delay = min(delay * 2, self.cfg.reopen_max_seconds)
                continue
            delay = self.cfg.reopen_min_seconds
            src = self.source
            onsets = StreamOnsets(src.rate_hz, src.channels, round(self.onset_lead_seconds * src.rate_hz)) \
                if self.onset_lead_seconds > 0 else None
            self.generation += 1
            log.info("capturing from %s at %d Hz, %d channel(s)", self.source.name, self.source.rate_hz,
                     self.source.channels)
            try:
                while not self._stop.is_set() and self._thread is me:
                    chunk = self.source.read()
                    if chunk is None:
                        self.ended = True
                        # what is still held is looked at now: a sound that began in the last reads keeps its window
                        self._put((self.generation, None, onsets.scan_held() if onsets is not None else -1), 0)
                        return
                    if chunk.size:
                        onset = onsets.add(chunk) if onsets is not None else -1
                        self._put((self.generation, chunk, onset), chunk.size // src.channels, onset >= 0)
            except SourceLost as exc:
                log.warning("%s; reopening", exc)
                self.reopens += 1
                self.source.close()
                self._stop.wait(delay)
        if self._thread is not me:  # abandoned after a stall: leave the device to the new thread
            return
        self.source.close()

    def _put(self, item, frames: int, urgent: bool = False) -> None:
        """Wait for room: a file or pipe then waits for the loop, and a device that is not read in time
        overruns in the driver, where ALSA counts it (source.overruns). Nothing is dropped silently here."""
        while not self._stop.is_set():
            if self.handoff.put(item, frames, 0.2, urgent):
                return

    def queued(self) -> int:
        """Items waiting in the hand-off now: the loop takes them in the same pass."""
        return len(self.handoff)

    def want(self, frames: int) -> None:
        """The processing loop needs this many more frames before its next window: wake it then, not before."""
        self.handoff.wanted = frames

    def get(self, timeout_s: float):
        """(generation, chunk, onset), (generation, None, onset) at the end of a file, or None when nothing arrived.
        `onset`: how many frames before the end of this chunk (at the end of a file: of the last one) a sound
        began; -1: none found, or not watched."""
        item = self.handoff.get(timeout_s)
        if item is None:
            last = max(self._last_audio, self.handoff.last_put)
            if not self.ended and time.monotonic() - last > self.cfg.stall_seconds:
                self._restart_after_stall()
            return None
        self._last_audio = time.monotonic()
        return item

    def _restart_after_stall(self) -> None:
        self.stalls += 1
        log.warning("no audio from %s for %.1f s: the device stalled; reopening it", self.source.name,
                    self.cfg.stall_seconds)
        self._last_audio = time.monotonic()
        self.reopens += 1
        self.start()  # the old thread sees it is no longer the current one and exits when its read returns

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

