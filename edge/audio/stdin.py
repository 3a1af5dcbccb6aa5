"""Raw PCM piped into the daemon on standard input."""

from __future__ import annotations

import io
import sys

import numpy as np

from ..config import AudioConfig


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
