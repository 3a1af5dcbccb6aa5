"""Reading WAV files into int16 PCM, with one clear error for each way a file can be unusable."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioFormatError
from .files import read_file
from .resample import check_rate

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
MAX_CHANNELS = 32


@dataclass
class WavAudio:
    samples: np.ndarray  # int16, shape (frames, channels)
    rate_hz: int
    channels: int

    @property
    def frames(self) -> int:
        return self.samples.shape[0]

    @property
    def seconds(self) -> float:
        return self.frames / self.rate_hz


def _to_int16(raw: bytes, fmt: int, bits: int, channels: int) -> np.ndarray:
    width = bits // 8
    usable = len(raw) - len(raw) % (width * channels)
    raw = raw[:usable]
    if fmt == WAVE_FORMAT_PCM and bits == 16:
        data = np.frombuffer(raw, "<i2").copy()
    elif fmt == WAVE_FORMAT_PCM and bits == 8:  # unsigned, offset 128
        data = ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif fmt == WAVE_FORMAT_PCM and bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        data = ((b[:, 2].astype(np.int8).astype(np.int32) << 8) | b[:, 1]).astype(np.int16)
    elif fmt == WAVE_FORMAT_PCM and bits == 32:
        data = (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    elif fmt == WAVE_FORMAT_IEEE_FLOAT and bits in (32, 64):
        f = np.frombuffer(raw, "<f4" if bits == 32 else "<f8")
        data = np.clip(np.rint(f * 32768.0), -32768, 32767).astype(np.int16)
    else:
        kind = "float" if fmt == WAVE_FORMAT_IEEE_FLOAT else "PCM" if fmt == WAVE_FORMAT_PCM else f"format 0x{fmt:04x}"
        raise AudioFormatError(f"unsupported sample format ({bits}-bit {kind}); "
                               "use 8/16/24/32-bit PCM or 32/64-bit float")
    return data.reshape(-1, channels)


def read_wav(path: str | Path) -> WavAudio:
    """Read a WAV file. Raises AudioFormatError with a one-line reason when it cannot be used: also for anything
    but a regular file (a FIFO or a device never ends) and for a file larger than LIMITS["WAV file"]."""
    path = Path(path)
    blob = read_file(path, "WAV file", AudioFormatError)
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise AudioFormatError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    pos = 12
    fmt_chunk = None
    data = None
    while pos + 8 <= len(blob):
        cid, size = blob[pos:pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        body = blob[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt_chunk = body
        elif cid == b"data":
            data = body  # a truncated file (size larger than what is left) keeps what is there
            break
        pos += 8 + size + (size & 1)
    if fmt_chunk is None or len(fmt_chunk) < 16:
        raise AudioFormatError(f"{path}: WAV file has no valid 'fmt ' chunk")
    fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt_chunk)
    if fmt == WAVE_FORMAT_EXTENSIBLE and len(fmt_chunk) >= 26:
        fmt = struct.unpack_from("<H", fmt_chunk, 24)[0]
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioFormatError(f"{path}: WAV header says {channels} channels (1 to {MAX_CHANNELS} are supported)")
    try:
        check_rate(rate)
    except ValueError as exc:
        raise AudioFormatError(f"{path}: WAV header: {exc}") from None
    if bits == 0 or bits % 8 or bits > 64:
        raise AudioFormatError(f"{path}: unsupported sample width ({bits} bits per sample); use 8/16/24/32-bit PCM "
                               "or 32/64-bit float")
    if data is None:
        raise AudioFormatError(f"{path}: WAV file has no 'data' chunk")
    try:
        samples = _to_int16(data, fmt, bits, channels)
    except AudioFormatError as exc:
        raise AudioFormatError(f"{path}: {exc}") from None
    if samples.shape[0] == 0:
        raise AudioFormatError(f"{path}: WAV file holds no audio samples")
    return WavAudio(samples, rate, channels)


def write_wav(path: str | Path, samples: np.ndarray, rate_hz: int) -> None:
    """Write int16 samples (frames,) or (frames, channels) as a PCM WAV."""
    samples = np.asarray(samples, np.int16)
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    payload = samples.astype("<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(payload), b"WAVE", b"fmt ", 16, WAVE_FORMAT_PCM,
                         channels, rate_hz, rate_hz * channels * 2, channels * 2, 16, b"data", len(payload))
    Path(path).write_bytes(header + payload)
