import numpy as np
import pytest

from edge.core.resample import Resampler


def _run(r, x, rng=None, max_chunk=4096):
    out, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, max_chunk)) if rng is not None else max_chunk
        out.append(r.process(x[i:i + n]).copy())
        i += n
    out.append(r.flush())
    return np.concatenate(out)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000, 96000])
def test_tone_survives_resampling_aligned_and_with_the_right_length(rate):
    n = rate + 123
    x = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / rate)).astype(np.float32)
    y = _run(Resampler(rate, 16000, 4096), x, np.random.default_rng(0))
    assert y.size == round(n * 16000 / rate)
    want = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(y.size) / 16000)
    inner = slice(400, y.size - 400)  # the edges see the silence before and after
    assert np.abs(y[inner] - want[inner]).max() < 1e-3


def test_output_does_not_depend_on_chunking():
    x = np.random.default_rng(2).uniform(-1, 1, 44100).astype(np.float32)
    a = _run(Resampler(44100, 16000, 4096), x, np.random.default_rng(3))
    b = _run(Resampler(44100, 16000, 4096), x, None)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_removes_content_above_the_new_nyquist():
    rate = 48000
    x = (0.5 * np.sin(2 * np.pi * 12000 * np.arange(rate) / rate)).astype(np.float32)  # aliases to 4 kHz
    y = _run(Resampler(rate, 16000, 4096), x)
    assert np.abs(y[400:-400]).max() < 1e-3


def test_rejects_oversized_chunk():
    with pytest.raises(ValueError):
        Resampler(44100, 16000, 100).process(np.zeros(101, np.float32))
