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


MEL_BLOCKS = 2  # the banded projection: bands in this many groups, each a product over the bins it covers
FRAME_BLOCK = 50  # frames transformed per call: the new frames of a hop up to 0.5 s; more come in several blocks


def mel_blocks(weights: np.ndarray, groups: int = MEL_BLOCKS) -> list[tuple[slice, slice, np.ndarray]]:
    """(bins, bands, weights[bins, bands]) for `groups` consecutive groups of bands: the mel matrix without the
    rows (FFT bins) a group never touches. The products over these blocks add up to the full product exactly."""
    bands = weights.shape[1]
    edges = np.linspace(0, bands, groups + 1).round().astype(int)
    blocks = []
    for b0, b1 in zip(edges[:-1], edges[1:]):
        rows = np.nonzero(weights[:, b0:b1].any(axis=1))[0]
        k0, k1 = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
        blocks.append((slice(k0, k1), slice(int(b0), int(b1)), np.ascontiguousarray(weights[k0:k1, b0:b1])))
    return blocks


class LogMelFrontEnd:
    """Turns 0.975 s windows of float32 audio into [96, 64] log-mel patches.

    All arrays are allocated here. When consecutive windows are a whole number of STFT hops apart (the default
    0.48 s hop is 48 of them, and the window loop keeps a patch model's windows on that 10 ms grid at any hop),
    the frames they share are copied from the previous patch, so each 10 ms frame is transformed once.

    Each new frame: the Hann window and the FFT in float64 (NumPy's FFT computes in float64: given a float64 input
    and a complex128 `out` it allocates nothing, while its float32 path was slower here and allocates a temporary
    on every call); from the spectrum on float32: magnitude, mel projection, log.
    The projection is banded: the 64 triangular filters touch only FFT bins 5-239, each filter a few of them,
    so it runs as one small product per group of bands over the bins that group covers (mel_blocks), not as
    one product with a 97 %-zero matrix. New frames go through in blocks of FRAME_BLOCK (the first window's 96
    in two), which halves the scratch arrays.
    """

    def __init__(self, params: FrontEndParams = FrontEndParams(), shared: "LogMelFrontEnd | None" = None):
        """`shared`: another front end whose scratch arrays (and constants) this one uses too: several streams
        classified by one thread each keep their own patches and window (about 110 KiB), and share the rest
        (about 800 KiB) — see fork()."""
        self.params = params
        p = params
        n, bins = p.patch_frames, p.fft_length // 2 + 1
        self._window = np.zeros(p.window_samples, np.float32)
        self._frames = np.lib.stride_tricks.as_strided(  # [96, 400] overlapping views of _window
            self._window, shape=(n, p.stft_window_samples), strides=(p.stft_hop_samples * 4, 4), writeable=False)
        self._patches = (np.zeros((n, p.mel_bands), np.float32), np.zeros((n, p.mel_bands), np.float32))
        self._current = 0
        self._last_start: int | None = None
        self.frames_computed = 0  # a counter for tests and benchmarks
        if shared is not None:
            if shared.params != params:
                raise ValueError("a front end shares scratch only with one of the same parameters")
            self._scratch = shared._scratch
        else:
            self._scratch = _Scratch(p, bins)
        sc = self._scratch
        self._blocks, self._block, self._hann = sc.blocks, sc.block, sc.hann
        self._windowed, self._padded, self._spectrum = sc.windowed, sc.padded, sc.spectrum
        self._spectrum32, self._magnitude = sc.spectrum32, sc.magnitude
        self._offset = np.float32(p.log_offset)
        self._rfft_out = sc.rfft_out

    def fork(self) -> "LogMelFrontEnd":
        """A front end for another stream: its own patches and window, this one's scratch (one thread computes
        at a time)."""
        return LogMelFrontEnd(self.params, shared=self)

    @property
    def buffers(self) -> tuple:
        """Every array compute() writes to (tests check they are never replaced)."""
        return (self._window, self._windowed, self._padded, self._spectrum, self._spectrum32, self._magnitude,
                *self._patches)

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
        if window.shape != self._window.shape:
            raise ValueError(f"window must be {p.window_samples} samples, not {window.shape}")
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
        if reuse < n:
            first = reuse * hop
            np.copyto(self._window[first:], window[first:])  # the new samples
            self._log_mel(reuse, out[reuse:])
        return out

    def _log_mel(self, first: int, out: np.ndarray) -> None:
        n = self.params.patch_frames
        for start in range(first, n, self._block):
            stop = min(start + self._block, n)
            self._log_mel_block(start, stop, out[start - first:stop - first])

    def _log_mel_block(self, first: int, stop: int, out: np.ndarray) -> None:
        count = stop - first
        windowed = self._windowed[:count]
        np.copyto(windowed, self._frames[first:stop])
        np.multiply(windowed, self._hann[:count], out=windowed)
        padded = self._padded[:count]
        np.copyto(padded[:, :self.params.stft_window_samples], windowed)
        spectrum = self._spectrum[:count]
        if self._rfft_out:
            np.fft.rfft(padded, axis=1, out=spectrum)
        else:  # NumPy < 2 has no `out` here (the tflite_runtime backend needs NumPy 1.x): one allocation
            spectrum[...] = np.fft.rfft(padded, axis=1)
        spectrum32 = self._spectrum32[:count]
        np.copyto(spectrum32, spectrum, casting="same_kind")  # |complex64| is cheaper than |complex128|
        magnitude = self._magnitude[:count]
        np.abs(spectrum32, out=magnitude)
        for bins, bands, weights in self._blocks:
            np.matmul(magnitude[:, bins], weights, out=out[:, bands])
        np.add(out, self._offset, out=out)
        np.log(out, out=out)
        self.frames_computed += count


class _Scratch:
    """What a front end only needs while it computes (overwritten by every call) and its constants."""

    def __init__(self, p: FrontEndParams, bins: int):
        self.blocks = mel_blocks(mel_matrix(p))
        b = self.block = min(FRAME_BLOCK, p.patch_frames)
        # a full [FRAME_BLOCK, 400] Hann: NumPy runs a broadcast operand through 64 KiB scratch buffers, equal
        # shapes not
        self.hann = np.tile(hann_periodic(p.stft_window_samples).astype(np.float64), (b, 1))
        # float64 up to the FFT: a float32 sample times a float32 Hann value is exact in float64, so the spectrum's
        # weak bins keep their precision (a float32 product would add rounding noise ~140 dB down)
        self.windowed = np.zeros((b, p.stft_window_samples), np.float64)
        self.padded = np.zeros((b, p.fft_length), np.float64)  # columns past the STFT window stay zero
        self.spectrum = np.zeros((b, bins), np.complex128)
        self.spectrum32 = np.zeros((b, bins), np.complex64)
        self.magnitude = np.zeros((b, bins), np.float32)
        self.rfft_out = _rfft_accepts_out()


def _rfft_accepts_out() -> bool:
    try:
        np.fft.rfft(np.zeros(4), out=np.zeros(3, np.complex128))
        return True
    except TypeError:
        return False
