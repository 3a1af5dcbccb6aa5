import struct

import numpy as np
import pytest

from edge.core.errors import AudioFormatError
from edge.core.wavfile import read_wav, write_wav


def _wav(fmt: int, bits: int, payload: bytes, channels=1, rate=16000) -> bytes:
    block = channels * bits // 8
    return (struct.pack("<4sI4s4sIHHIIHH", b"RIFF", 36 + len(payload), b"WAVE", b"fmt ", 16, fmt, channels, rate,
                        rate * block, block, bits) + struct.pack("<4sI", b"data", len(payload)) + payload)


def test_roundtrip_16bit_stereo(tmp_path):
    x = np.arange(-100, 100, dtype=np.int16).reshape(-1, 2)
    write_wav(tmp_path / "a.wav", x, 44100)
    a = read_wav(tmp_path / "a.wav")
    assert a.rate_hz == 44100 and a.channels == 2
    np.testing.assert_array_equal(a.samples, x)


def test_24bit_and_float_are_converted(tmp_path):
    v = np.array([0, 1 << 22, -(1 << 22)], np.int32)
    raw24 = b"".join(int(s).to_bytes(3, "little", signed=True) for s in v)
    (tmp_path / "b.wav").write_bytes(_wav(1, 24, raw24))
    np.testing.assert_array_equal(read_wav(tmp_path / "b.wav").samples[:, 0], [0, 16384, -16384])
    (tmp_path / "f.wav").write_bytes(_wav(3, 32, np.array([0.5, -0.5], "<f4").tobytes()))
    np.testing.assert_array_equal(read_wav(tmp_path / "f.wav").samples[:, 0], [16384, -16384])


@pytest.mark.parametrize("content,message", [
    (b"ID3\x04 this is an mp3", "not a WAV file"),
    (b"", "not a WAV file"),
    (_wav(1, 16, b""), "no audio samples"),
    (_wav(1, 12, b"\x00\x00" * 10), "unsupported sample width"),
    (_wav(0x55, 16, b"\x00\x00" * 10), "unsupported sample format"),
])
def test_bad_wavs(tmp_path, content, message):
    f = tmp_path / "x.wav"
    f.write_bytes(content)
    with pytest.raises(AudioFormatError, match=message):
        read_wav(f)
