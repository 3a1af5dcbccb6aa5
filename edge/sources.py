"""Audio sources and the capture thread that keeps them running.

A source's blocking `read()` returns interleaved int16 PCM (or None at the end of a file). The capture thread
calls it, hands chunks to the processing loop through a bounded queue, and reopens a lost device with backoff.
The processing loop never waits on a device: when no audio arrives for `stall_seconds`, it declares a stall
and starts a fresh capture thread (a read blocked inside the driver cannot be interrupted, only abandoned).
"""

from __future__ import annotations

import io
import logging
import queue
import random
import sys
import threading
import time

import numpy as np

from .config import AudioConfig
from .errors import ConfigError
from .wavio import read_wav

log = logging.getLogger("edge.audio")

EMPTY = np.zeros(0, np.int16)


class SourceLost(Exception):
    """The device went away; the capture thread reopens it."""


class AlsaSource:
    """Capture from an ALSA PCM by name through pyalsaaudio."""

    def __init__(self, cfg: AudioConfig):
        try:
            import alsaaudio
        except ImportError:
            raise ConfigError("audio.source = 'alsa' needs pyalsaaudio: pip install 'edge-audio[device]' "
                              "(it builds against libasound2-dev)") from None
        self._alsa = alsaaudio
        self.cfg = cfg
        self.name = f"ALSA '{cfg.device}'"
        self.rate_hz = cfg.rate_hz
        self.channels = cfg.channels
        self.overruns = 0
        self._pcm = None
        self._s32 = cfg.format == "S32_LE"
        self._wide = np.zeros(cfg.period_frames * cfg.channels * 4, np.int32) if self._s32 else None
        self._narrow = np.zeros(cfg.period_frames * cfg.channels * 4, np.int16) if self._s32 else None

    def open(self) -> None:
        a, cfg = self._alsa, self.cfg
        fmt = a.PCM_FORMAT_S32_LE if self._s32 else a.PCM_FORMAT_S16_LE
        try:
            self._pcm = a.PCM(type=a.PCM_CAPTURE, mode=a.PCM_NORMAL, device=cfg.device, channels=cfg.channels,
                              rate=cfg.rate_hz, format=fmt, periodsize=cfg.period_frames, periods=4)
            info = self._pcm.info()
        except a.ALSAAudioError as exc:
            self._pcm = None
            raise SourceLost(f"cannot open {self.name}: {exc}") from None
        # ALSA may give another rate or channel count than asked: use what the device opened with
        self.rate_hz = int(info.get("rate", cfg.rate_hz))
        self.channels = int(info.get("channels", cfg.channels))

    def read(self) -> np.ndarray | None:
        try:
            n, data = self._pcm.read()
        except self._alsa.ALSAAudioError as exc:
            raise SourceLost(f"{self.name}: {exc}") from None
        if n < 0:  # -EPIPE: overrun; pyalsaaudio has re-prepared the device
            self.overruns += 1
            return EMPTY
        if n == 0:
            return EMPTY
        if not self._s32:
            return np.frombuffer(data, "<i2")
        wide = np.frombuffer(data, "<i4")
        out = self._narrow[:wide.size]
        np.right_shift(wide, 16, out=self._wide[:wide.size])
        np.copyto(out, self._wide[:wide.size], casting="unsafe")
        return out

    def close(self) -> None:
        if self._pcm is not None:
            try:
                self._pcm.close()
            except Exception:
                pass
            self._pcm = None


class WavSource:
    """Replay a WAV file, paced at real time or as fast as possible, once or in a loop."""

    def __init__(self, cfg: AudioConfig):
        audio = read_wav(cfg.file)
        self.name = f"WAV {cfg.file}"
        self.rate_hz, self.channels = audio.rate_hz, audio.channels
        self._pcm = np.ascontiguousarray(audio.samples).reshape(-1)
        self._step = cfg.period_frames * self.channels
        self._realtime, self._loop = cfg.realtime, cfg.loop
        self.overruns = 0
        self._pos = 0
        self._t0 = 0.0
        self._sent = 0

    def open(self) -> None:
        self._t0 = time.monotonic()
        self._sent = 0

    def read(self) -> np.ndarray | None:
        if self._pos >= self._pcm.size:
            if not self._loop:
                return None
            self._pos = 0
        chunk = self._pcm[self._pos:self._pos + self._step]
        self._pos += self._step
        if self._realtime:
            due = self._t0 + self._sent / (self.rate_hz * self.channels)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._sent += chunk.size
        return chunk

    def close(self) -> None:
        pass


class StdinSource:
    """Raw interleaved S16_LE PCM on standard input (e.g. piped from arecord or ffmpeg)."""

    def __init__(self, cfg: AudioConfig, stream=None):
        self.name = "stdin"
        self.rate_hz, self.channels = cfg.rate_hz, cfg.channels
        self.overruns = 0
        # the raw descriptor: a thread blocked in the buffered reader holds its lock, and the interpreter aborts
        # at exit if it cannot take it
        self._stream = stream or io.FileIO(sys.stdin.fileno(), "rb", closefd=False)
        self._buf = bytearray(cfg.period_frames * cfg.channels * 2)
        self._view = memoryview(self._buf)
        self._carry = 0

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        n = self._stream.readinto(self._view[self._carry:])
        if not n:
            return None
        total = self._carry + n
        usable = total - total % (2 * self.channels)
        out = np.frombuffer(self._buf, "<i2", usable // 2).copy()
        self._carry = total - usable
        if self._carry:
            self._buf[:self._carry] = self._buf[usable:total]
        return out

    def close(self) -> None:
        pass


def make_source(cfg: AudioConfig):
    return {"alsa": AlsaSource, "wav": WavSource, "stdin": StdinSource}[cfg.source](cfg)


class Capture:
    """Runs a source's blocking reads in a thread; the processing loop calls `get()`."""

    def __init__(self, source, cfg: AudioConfig, depth: int = 64):
        self.source = source
        self.cfg = cfg
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.reopens = 0
        self.stalls = 0
        self.generation = 0  # bumped when the device (re)opens: its rate may have changed
        self.ended = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_audio = time.monotonic()

    def start(self) -> None:
        self._stop.clear()
        thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        me = threading.current_thread()
        delay = self.cfg.reopen_min_seconds
        while not self._stop.is_set() and self._thread is me:
            try:
                self.source.open()
            except SourceLost as exc:
                log.warning("%s; retrying in %.1f s", exc, delay)
                self._stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.cfg.reopen_max_seconds)
                continue
            delay = self.cfg.reopen_min_seconds
            self.generation += 1
            log.info("capturing from %s at %d Hz, %d channel(s)", self.source.name, self.source.rate_hz,
                     self.source.channels)
            try:
                while not self._stop.is_set() and self._thread is me:
                    chunk = self.source.read()
                    if chunk is None:
                        self.ended = True
                        self.queue.put((self.generation, None))
                        return
                    if chunk.size:
                        self._put((self.generation, chunk))
            except SourceLost as exc:
                log.warning("%s; reopening", exc)
                self.reopens += 1
                self.source.close()
                self._stop.wait(delay)
        if self._thread is not me:  # abandoned after a stall: leave the device to the new thread
            return
        self.source.close()

    def _put(self, item) -> None:
        """Wait for room: a file or pipe then waits for the loop, and a device that is not read in time
        overruns in the driver, where ALSA counts it (source.overruns). Nothing is dropped silently here."""
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def get(self, timeout_s: float):
        """(generation, chunk), (generation, None) at the end of a file, or None when nothing arrived."""
        try:
            item = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            if not self.ended and time.monotonic() - self._last_audio > self.cfg.stall_seconds:
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

