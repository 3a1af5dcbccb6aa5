"""The ALSA source against real ALSA (the `file` plugin): chunks stay intact while they wait in the queue."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tools.rig.mic import FileMic

pytest.importorskip("alsaaudio")

READ_AND_KEEP = """
import sys
import numpy as np
from edge.audio.alsa import AlsaSource
from edge.config import AudioConfig
cfg = AudioConfig(source="alsa", device="testmic", rate_hz=48000, channels=2, format=sys.argv[1], period_frames=1024)
src = AlsaSource(cfg)
src.open()
kept = [src.read() for _ in range(8)]  # held, as the hand-off queue holds them until the loop wakes
src.close()
np.save(sys.argv[2], np.concatenate(kept))
"""


@pytest.mark.parametrize("fmt", ["S16_LE", "S32_LE"])
def test_chunks_read_earlier_are_not_overwritten_by_later_reads(tmp_path, fmt):
    rng = np.random.default_rng(7)
    frames = 48000
    high = rng.integers(-32768, 32768, (frames, 2)).astype(np.int32)
    mic = FileMic(tmp_path / "alsa", np.zeros(0, np.int16))
    if fmt == "S32_LE":  # low bits that must be dropped, not rounded: the high 16 bits are the sample
        ((high << 16) | rng.integers(0, 65536, (frames, 2))).astype("<i4").tofile(mic.raw)
    else:
        high.astype("<i2").tofile(mic.raw)
    out = tmp_path / "read.npy"
    res = subprocess.run([sys.executable, "-c", READ_AND_KEEP, fmt, str(out)], env={**mic.env, **_env()},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    got = np.load(out)
    assert got.dtype == np.int16 and got.size == 8 * 1024 * 2
    np.testing.assert_array_equal(got, high.reshape(-1)[:got.size].astype(np.int16))


def _env() -> dict:
    import os
    from pathlib import Path
    return dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
