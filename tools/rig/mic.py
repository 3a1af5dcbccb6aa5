"""An ALSA capture device for a daemon to open by name (DEVICE, `testmic`): the alsa-lib `file` plugin over a `null`
slave, reading raw S16_LE audio from a file or from a FIFO. The daemon gets `env` (ALSA_CONFIG_PATH) to see it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

DEVICE = "testmic"


def _pcm_env(folder: Path, infile: Path) -> dict:
    """DEVICE reading `infile`, in an asound.conf in `folder`: the environment that shows it to alsa-lib."""
    conf = folder / "asound.conf"
    conf.write_text(f'pcm.{DEVICE} {{ type file slave.pcm "null" file "/dev/null" infile "{infile}" format "raw" }}\n')
    return {"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}"}


class FileMic:
    """Reads a file of raw samples. It is not paced, and after the end of the file it repeats the last period: end
    recordings with silence."""

    def __init__(self, folder: Path, pcm: np.ndarray):
        folder.mkdir(parents=True, exist_ok=True)
        self.raw = folder / "mic.raw"
        pcm.astype("<i2").tofile(self.raw)
        self.env = _pcm_env(folder, self.raw)


class FifoMic:
    """Reads a FIFO the caller writes to (open_writer, then write or feed)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.fifo = folder / "mic.fifo"
        os.mkfifo(self.fifo)
        self.env = _pcm_env(folder, self.fifo)
        self._fd = None

    def open_writer(self) -> None:
        # O_RDWR never blocks on a FIFO, and keeps it open so the reader does not see end-of-file
        self._fd = os.open(self.fifo, os.O_RDWR)

    def write(self, pcm: np.ndarray, period_frames: int = 1024) -> None:
        """Write whole periods, one write each: a FIFO write of up to PIPE_BUF bytes is atomic, so the plugin's
        reads never see half a period (it does not cope with short reads)."""
        data = pcm.astype("<i2").tobytes()
        step = period_frames * 2
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            while piece:
                n = os.write(self._fd, piece)
                piece = piece[n:]

    def feed(self, *pieces: np.ndarray) -> threading.Thread:
        """write() each piece in turn from a thread of its own (a FIFO blocks until the reader keeps up)."""
        def run():
            for p in pieces:
                self.write(p)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
