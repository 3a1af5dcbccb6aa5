"""Replaying a WAV file as if it were a microphone (tests, demos, recorded sites)."""

from __future__ import annotations

import time

import numpy as np

from ..config import AudioConfig
from ..core.wavfile import read_wav


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
        if self._realtime:  # handed over once its last frame is due, as a microphone hands over a period
            due = self._t0 + (self._sent + chunk.size) / (self.rate_hz * self.channels)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._sent += chunk.size
        return chunk

    def close(self) -> None:
        pass
