"""Streaming polyphase resampling with preallocated state (NumPy only).

A rational rate change up/down (44100 -> 16000 is 160/441) is a windowed-sinc low-pass filter applied at the
upsampled rate, evaluated only at the output instants. The pattern of (input position, filter phase) repeats
every `down` input samples, so the gather indices for a block of whole periods are built once and every
block is one np.take plus one multiply-sum into arrays that already exist.
"""

from __future__ import annotations

from math import gcd

import numpy as np

ZERO_CROSSINGS = 16  # filter half-length in zero crossings of the narrower band: ~-80 dB stop band with beta 8
KAISER_BETA = 8.0
MIN_RATE_HZ, MAX_RATE_HZ = 8000, 384000  # what the kit accepts from a file or a device
MAX_GATHER_ENTRIES = 4_000_000  # ~48 MB of gather tables: rates with no small ratio to the target cost more


def plan(rate_in_hz: int, rate_out_hz: int, max_chunk: int = 8192) -> tuple[int, int, int, int]:
    """(up, down, taps per phase, gather table entries) of a rate change, computed without allocating."""
    g = gcd(rate_in_hz, rate_out_hz)
    up, down = rate_out_hz // g, rate_in_hz // g
    taps = -(-(2 * ZERO_CROSSINGS * max(up, down) + 1) // up)
    capacity = 2 * taps + 2 * down + max_chunk
    return up, down, taps, (capacity // down + 1) * up * taps


def check_rate(rate_in_hz: int, rate_out_hz: int = 16000, max_chunk: int = 8192) -> None:
    """ValueError with a one-line reason for a rate the kit will not resample (out of range, or no small ratio)."""
    if not MIN_RATE_HZ <= rate_in_hz <= MAX_RATE_HZ:
        raise ValueError(f"sample rate {rate_in_hz} Hz is outside {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz")
    if rate_in_hz == rate_out_hz:
        return
    up, down, _, entries = plan(rate_in_hz, rate_out_hz, max_chunk)
    if entries > MAX_GATHER_ENTRIES:
        raise ValueError(f"sample rate {rate_in_hz} Hz has no small ratio to {rate_out_hz} Hz ({up}/{down}); "
                         f"convert the audio first (for example: sox in.wav -r {rate_out_hz} out.wav)")


def design_filter(up: int, down: int, zero_crossings: int = ZERO_CROSSINGS) -> np.ndarray:
    """Polyphase bank [up, taps]: phase p holds the filter taps applied to input samples for output phase p."""
    factor = max(up, down)
    half = zero_crossings * factor
    taps_total = 2 * half + 1
    t = np.arange(taps_total) - half
    cutoff = 0.95 / factor  # a little inside Nyquist of the narrower band
    h = cutoff * np.sinc(cutoff * t) * np.kaiser(taps_total, KAISER_BETA) * up
    per_phase = -(-taps_total // up)
    padded = np.zeros(per_phase * up)
    padded[:taps_total] = h
    # phase p uses h[p], h[p+up], ...; reversed so taps line up with increasing input time
    return padded.reshape(per_phase, up).T[:, ::-1].astype(np.float32).copy()


class Resampler:
    """Resamples a mono float32 stream from `rate_in_hz` to `rate_out_hz` in chunks of any size.

    Output is aligned with the input (the filter's delay is removed), so a file resampled and flushed has
    round(n * out / in) samples. `max_chunk` bounds how many input samples one `process` call accepts.
    """

    def __init__(self, rate_in_hz: int, rate_out_hz: int, max_chunk: int = 8192):
        rate_in_hz, rate_out_hz = int(rate_in_hz), int(rate_out_hz)
        if rate_in_hz <= 0 or rate_out_hz <= 0:
            raise ValueError("sample rates must be positive")
        g = gcd(rate_in_hz, rate_out_hz)
        self.rate_in_hz, self.rate_out_hz = rate_in_hz, rate_out_hz
        self.up, self.down = rate_out_hz // g, rate_in_hz // g
        up, down = self.up, self.down
        bank = design_filter(up, down)
        taps = bank.shape[1]
        self._taps = taps
        self._half = ZERO_CROSSINGS * max(up, down)  # centre of the filter, in upsampled samples
        self.max_chunk = max_chunk
        capacity = 2 * taps + 2 * down + max_chunk
        periods = capacity // down + 1
        # Output k sits at upsampled position P = k*down + half (half = the filter's delay, so output 0 is
        # stream time 0); it reads history[P // up + j], j < taps, with the taps of phase P % up.
        k = np.arange(periods * up)
        position = k * down + self._half
        self._index = ((position // up)[:, None] + np.arange(taps)[None, :]).astype(np.intp)
        self._weights = bank[position % up]
        self._history = np.zeros(capacity, np.float32)
        self._fill = taps - 1  # zeros standing for the silence before the stream
        self._gather = np.zeros((periods * up, taps), np.float32)
        self._out = np.zeros(periods * up, np.float32)
        self._scratch = np.zeros_like(self._history)
        self._in_total = 0
        self._out_total = 0

    @property
    def buffers(self) -> tuple:
        """Every array process() writes to."""
        return (self._history, self._gather, self._out, self._scratch)

    @property
    def capacity_out(self) -> int:
        """Most samples one `process` call can return."""
        return self._out.size

    def _ready_periods(self) -> int:
        up, down, taps = self.up, self.down, self._taps
        periods = max(0, (self._fill - taps - self._half // up) // down)
        # the last output of the block must only read samples already held
        while periods > 0 and ((periods * up - 1) * down + self._half) // up + taps > self._fill:
            periods -= 1
        return periods

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed `x` (float32 or int16, at most max_chunk samples); returns a view of new output samples."""
        n = x.size
        if n > self.max_chunk:
            raise ValueError(f"chunk of {n} samples exceeds max_chunk {self.max_chunk}")
        self._in_total += n
        h = self._history
        h[self._fill:self._fill + n] = x
        self._fill += n
        periods = self._ready_periods()
        if periods == 0:
            return self._out[:0]
        m = periods * self.up
        gather = self._gather[:m]
        np.take(h, self._index[:m], out=gather, mode="clip")  # 'raise' would buffer `out`
        np.multiply(gather, self._weights[:m], out=gather)
        out = self._out[:m]
        np.sum(gather, axis=1, out=out)
        consumed = periods * self.down
        keep = self._fill - consumed
        # move the unconsumed tail to the front through scratch (an overlapping copy would allocate)
        self._scratch[:keep] = h[consumed:self._fill]
        h[:keep] = self._scratch[:keep]
        self._fill = keep
        self._out_total += m
        return out

    def flush(self) -> np.ndarray:
        """Push silence through so the last input samples come out; returns the rest of the output.
        Allocates: call it once at the end of a file, never in the streaming loop."""
        target = round(self._in_total * self.up / self.down)
        pieces = []
        zeros = np.zeros(min(self.max_chunk, 2 * self._taps + self.down), np.float32)
        in_total = self._in_total
        while self._out_total < target:
            pieces.append(self.process(zeros).copy())
        self._in_total = in_total
        result = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        excess = self._out_total - target
        self._out_total = target
        return result[:result.size - excess] if excess > 0 else result
