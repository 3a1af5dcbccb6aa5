"""YAMNet's log-mel front end in NumPy, streaming and preallocated.

Matches the reference (tensorflow/models research/audioset/yamnet features.py): periodic Hann window of
400 samples, hop 160, FFT length 512, magnitude spectrum, 64 HTK-mel bands 125-7500 Hz with the DC bin
zeroed (as tf.signal.linear_to_mel_weight_matrix), log(mel + 0.001); 96 frames make a patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrontEndParams:
    """Log-mel parameters; the defaults are YAMNet's."""

    sample_rate_hz: int = 16000
    stft_window_samples: int = 400
    stft_hop_samples: int = 160
    fft_length: int = 512
    mel_bands: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7500.0
    log_offset: float = 0.001
    patch_frames: int = 96

    @property
    def window_samples(self) -> int:
        """Audio samples that make exactly one patch (15600 for YAMNet)."""
        return self.stft_window_samples + (self.patch_frames - 1) * self.stft_hop_samples

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> "FrontEndParams":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown front-end parameter(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def _hertz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(hz / 700.0)


def mel_matrix(params: FrontEndParams) -> np.ndarray:
    """[fft_length//2+1, mel_bands] triangular weights, as tf.signal.linear_to_mel_weight_matrix builds them."""
    bins = params.fft_length // 2 + 1
    linear_hz = np.linspace(0.0, params.sample_rate_hz / 2.0, bins)[1:]  # DC bin is zeroed
    bins_mel = _hertz_to_mel(linear_hz)[:, None]
    edges = np.linspace(_hertz_to_mel(np.float64(params.mel_min_hz)), _hertz_to_mel(np.float64(params.mel_max_hz)),
                        params.mel_bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slopes = (bins_mel - lower) / (center - lower)
    upper_slopes = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    return np.vstack([np.zeros((1, params.mel_bands)), weights]).astype(np.float32)


def hann_periodic(length: int) -> np.ndarray:
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)).astype(np.float32)


def dft_basis(window_samples: int, fft_length: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Two [window, bins] matrices: Hann-windowed cos and -sin of the first `bins` bins of a real DFT of
    length `fft_length` (the frame is zero-padded from window_samples, so only those rows exist)."""
    n = np.arange(window_samples, dtype=np.float64)[:, None]
    k = np.arange(bins, dtype=np.float64)[None, :]
    phase = 2.0 * np.pi * n * k / fft_length
    hann = hann_periodic(window_samples).astype(np.float64)[:, None]
    return (np.ascontiguousarray((hann * np.cos(phase)).astype(np.float32)),
            np.ascontiguousarray((-hann * np.sin(phase)).astype(np.float32)))


class LogMelFrontEnd:
    """Turns 0.975 s windows of float32 audio into [96, 64] log-mel patches.

    All arrays are allocated here. When consecutive windows overlap by a whole number of STFT hops
    (the default 0.48 s hop is 48 of them), the frames they share are copied from the previous patch,
    so each 10 ms frame is transformed once.

    The spectrum is a matrix product with a precomputed real DFT basis that has the Hann window folded in
    and stops at the last bin the mel bank uses (7500 Hz): unlike np.fft (which works in float64 scratch
    memory), it allocates nothing per call.
    """

    def __init__(self, params: FrontEndParams = FrontEndParams()):
        self.params = params
        p = params
        mel = mel_matrix(p)
        bins = int(np.nonzero(mel.any(axis=1))[0][-1]) + 1  # bins above the top mel band are never used
        self._mel = np.ascontiguousarray(mel[:bins])
        self._cos, self._sin = dft_basis(p.stft_window_samples, p.fft_length, bins)
        n = p.patch_frames
        self._real = np.zeros((n, bins), np.float32)
        self._imag = np.zeros((n, bins), np.float32)  # then the magnitude, in place
        self._patches = (np.zeros((n, p.mel_bands), np.float32), np.zeros((n, p.mel_bands), np.float32))
        self._current = 0
        self._last_start: int | None = None
        self._framed_source: np.ndarray | None = None  # the window array the strided frame view looks into
        self._framed: np.ndarray | None = None
        self.frames_computed = 0  # a counter for tests and benchmarks

    @property
    def patch(self) -> np.ndarray:
        """The latest patch (a preallocated array; overwritten by the next call)."""
        return self._patches[self._current]

    def reset(self) -> None:
        self._last_start = None

    def compute(self, window: np.ndarray, start_sample: int | None = None) -> np.ndarray:
        """Log-mel patch of `window` (float32, window_samples long). `start_sample` is the window's position in
        the stream; give it to let overlapping windows share frames, leave it None for independent windows."""
        p = self.params
        n = p.patch_frames
        hop = p.stft_hop_samples
        reuse = 0
        if start_sample is not None and self._last_start is not None:
            shift = start_sample - self._last_start
            if shift > 0 and shift % hop == 0 and shift // hop < n:
                reuse = n - shift // hop
        previous = self._patches[self._current]
        self._current ^= 1
        out = self._patches[self._current]
        if reuse:
            out[:reuse] = previous[n - reuse:]
        self._last_start = start_sample
        first = reuse
        count = n - first
        if count:
            self._log_mel(self._frames_of(window)[first:], out[first:], count)
        return out

    def _frames_of(self, window: np.ndarray) -> np.ndarray:
        """[96, 400] overlapping frames as a view of `window`, built once per window array (callers reuse one)."""
        if window is not self._framed_source:
            if window.dtype != np.float32 or window.size != self.params.window_samples or not window.flags.c_contiguous:
                raise ValueError(f"window must be {self.params.window_samples} contiguous float32 samples")
            p = self.params
            self._framed = np.lib.stride_tricks.as_strided(
                window, shape=(p.patch_frames, p.stft_window_samples), strides=(p.stft_hop_samples * 4, 4),
                writeable=False)
            self._framed_source = window
        return self._framed

    def _log_mel(self, frames: np.ndarray, out: np.ndarray, count: int) -> None:
        real, imag = self._real[:count], self._imag[:count]  # contiguous: ufuncs need no scratch buffers
        np.matmul(frames, self._cos, out=real)
        np.matmul(frames, self._sin, out=imag)
        np.hypot(real, imag, out=imag)
        np.matmul(imag, self._mel, out=out)
        np.add(out, self.params.log_offset, out=out)
        np.log(out, out=out)
        self.frames_computed += count
