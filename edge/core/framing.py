"""From a stream of PCM chunks to fixed, overlapping float32 windows, with buffers allocated once.

    chunk (int16, interleaved, any rate) -> downmix -> resample to 16 kHz -> int16 ring -> float32 window
"""

from __future__ import annotations

import numpy as np

from .resample import Resampler

INT16_SCALE = np.float32(1.0 / 32768.0)


class RingBuffer:
    """A fixed int16 ring that remembers the absolute index of every sample written."""

    def __init__(self, capacity: int):
        self.buffer = np.zeros(capacity, np.int16)
        self.capacity = capacity
        self.written = 0  # total samples ever written; sample i lives at buffer[i % capacity]

    def write(self, samples: np.ndarray) -> None:
        n = samples.size
        if n > self.capacity:
            samples = samples[n - self.capacity:]
            self.written += n - self.capacity
            n = self.capacity
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        if first == n:  # no wrap: one copy, no slice of the input
            self.buffer[start:start + n] = samples
        else:
            self.buffer[start:start + first] = samples[:first]
            self.buffer[:n - first] = samples[first:]
        self.written += n

    def oldest(self) -> int:
        return max(0, self.written - self.capacity)

    def _place(self, start: int, n: int) -> tuple[int, int]:
        """Where samples [start, start + n) begin in the buffer, and how many of them come before it wraps."""
        if start < self.oldest() or start + n > self.written:
            raise IndexError(f"samples [{start}, {start + n}) are not in the ring")
        begin = start % self.capacity
        return begin, min(n, self.capacity - begin)

    def copy_to(self, start: int, out: np.ndarray) -> None:
        """Copy samples [start, start + out.size) into the int16 array `out` (a clip's block)."""
        n = out.size
        begin, first = self._place(start, n)
        out[:first] = self.buffer[begin:begin + first]
        if first < n:
            out[first:] = self.buffer[:n - first]

    def read_float(self, start: int, out: np.ndarray) -> None:
        """Copy samples [start, start + out.size) into `out` as float32 in [-1, 1)."""
        n = out.size
        begin, first = self._place(start, n)
        # cast first, then scale in float32: a ufunc that casts on the way goes through a 32 KiB scratch buffer
        np.copyto(out[:first], self.buffer[begin:begin + first], casting="unsafe")
        if first < n:
            np.copyto(out[first:], self.buffer[:n - first], casting="unsafe")
        np.multiply(out, INT16_SCALE, out=out)


class Framer:
    """Accepts PCM chunks of any size and hands out windows every `hop_samples`.

    `push(chunk)` then `while (w := framer.next_window()) is not None: ...`. The window array is the same
    object every time (overwritten); `window_start` is its first sample's index in the 16 kHz stream.

    With `grid_samples` > 1 every window starts on a multiple of it: window k starts at k x hop rounded to the
    grid, so the hop keeps its average and each start moves by less than half a grid step. A log-mel front end
    passes its STFT hop (160 samples), so overlapping windows share whole frames at any hop.
    """

    def __init__(self, window_samples: int = 15600, hop_samples: int = 7680, rate_in_hz: int = 16000,
                 channels: int = 1, rate_hz: int = 16000, max_chunk_frames: int = 8192, grid_samples: int = 1,
                 offset_samples: int = 0, history_samples: int = 0):
        if hop_samples <= 0 or window_samples <= 0 or grid_samples <= 0:
            raise ValueError("window, hop and grid must be positive")
        self.window_samples = window_samples
        self.hop_samples = hop_samples
        self.grid_samples = grid_samples
        self.rate_hz = rate_hz
        self.rate_in_hz = rate_in_hz
        self.channels = channels
        self.max_chunk_frames = max_chunk_frames
        self.window = np.zeros(window_samples, np.float32)
        self.window_start = 0
        # the grid's windows start at offset_samples + k x hop (less than a hop: a daemon's sources are spread
        # over the hop, so their windows are not all due at once)
        self.offset_samples = offset_samples % hop_samples
        self._index = 0  # the next window's number: it starts at _start_of(_index)
        self._next_start = self._start_of(0)
        self._last_start = -hop_samples  # the last window handed out (none yet)
        self.skipped_windows = 0  # windows dropped because the consumer fell behind the ring
        self.extra = False  # the window just handed out is an extra one (between two of the grid)
        self._extra_start = -1  # an extra window to come (add_window_ending_after), or -1
        self._mono = np.zeros(max_chunk_frames, np.float32)
        self._interleaved = np.zeros(max_chunk_frames * channels, np.float32)
        self._mono16 = np.zeros(max_chunk_frames, np.int16)
        self._resampler = Resampler(rate_in_hz, rate_hz, max_chunk_frames) if rate_in_hz != rate_hz else None
        resampled_max = self._resampler.capacity_out if self._resampler else max_chunk_frames
        self._resampled16 = np.zeros(resampled_max, np.int16)
        # what the windows need of the ring; `history_samples` more are kept behind it (a clip's pre-roll: the
        # audio before an event began) and never make the windows fall further behind
        self._span = window_samples + max(hop_samples, resampled_max) + resampled_max
        self.ring = RingBuffer(self._span + history_samples)

    @property
    def next_grid_start(self) -> int:
        """Where the grid's next window starts: every sample before it has been in all the windows it will be in."""
        return self._next_start

    def _oldest(self) -> int:
        """The oldest sample a window may still start at: older ones are history, not a backlog to classify."""
        return max(0, self.ring.written - self._span)

    @property
    def buffers(self) -> tuple:
        """Every array the hot path writes to (tests check they are never replaced)."""
        arrays = [self.window, self._mono, self._interleaved, self._mono16, self._resampled16, self.ring.buffer]
        if self._resampler is not None:
            arrays += list(self._resampler.buffers)
        return tuple(arrays)

    def push(self, chunk: np.ndarray) -> None:
        """Feed interleaved int16 PCM (frames x channels), at most max_chunk_frames frames.

        Windows are handed out by next_window(); call it until it returns None before pushing again, or the
        ring will overwrite audio that was not framed yet."""
        frames = chunk.size // self.channels
        if frames > self.max_chunk_frames:
            for i in range(0, frames, self.max_chunk_frames):
                self.push(chunk[i * self.channels:(i + self.max_chunk_frames) * self.channels])
            return
        if self.channels == 1:
            mono16 = chunk[:frames]
        else:
            mono = self._mono[:frames]
            both = self._interleaved[:frames * self.channels]
            np.copyto(both, chunk[:frames * self.channels], casting="unsafe")
            np.sum(both.reshape(frames, self.channels), axis=1, out=mono)
            np.multiply(mono, np.float32(1.0 / self.channels), out=mono)
            mono16 = self._mono16[:frames]
            np.rint(mono, out=mono)
            np.copyto(mono16, mono, casting="unsafe")
        if self._resampler is None:
            self.ring.write(mono16)
            return
        out = self._resampler.process(mono16)
        self._write_float(out)

    def _write_float(self, samples: np.ndarray) -> None:
        out16 = self._resampled16[:samples.size]
        np.clip(samples, -32768.0, 32767.0, out=samples)
        np.rint(samples, out=samples)
        np.copyto(out16, samples, casting="unsafe")
        self.ring.write(out16)

    def finish(self) -> None:
        """End of stream: let the resampler's last samples out (allocates; once per file)."""
        if self._resampler is not None:
            tail = self._resampler.flush()
            for i in range(0, tail.size, self._resampled16.size):
                self._write_float(tail[i:i + self._resampled16.size])

    def pad_to_complete(self) -> None:
        """End of a file, after the windows are drained: add silence so audio not covered by a window yet gets
        one more window (YAMNet's reference pads the same way; a clip shorter than a window becomes one)."""
        written = self.ring.written
        # the grid's windows are the ones that must cover the audio (an onset window feeds the fast onset only)
        last_grid_start = self._start_of(self._index - 1) if self._index else -self.hop_samples
        if written >= self.window_samples and written <= last_grid_start + self.window_samples:
            return
        needed = self._next_start + self.window_samples - written
        zeros = np.zeros(min(needed, self.ring.capacity - self.window_samples), np.int16)
        while needed > 0:
            step = min(needed, zeros.size)
            self.ring.write(zeros[:step])
            needed -= step

    def samples_until_next_window(self) -> int:
        """Samples (at rate_hz) still missing for the next window; 0 when it can be read now."""
        wait = self._next_start + self.window_samples - self.ring.written
        if 0 <= self._extra_start < self._next_start:
            wait = min(wait, self._extra_start + self.window_samples - self.ring.written)
        return max(0, wait)

    def next_window_end(self) -> tuple[int, bool]:
        """(the stream sample at which the next window to be handed out ends, whether it is an extra one): a
        scheduler serving several streams takes the oldest first, an extra (onset) window before the grid's."""
        extra = self._extra_start
        if 0 <= extra < self._next_start:
            return extra + self.window_samples, True
        return self._next_start + self.window_samples, False

    def add_window_ending_after(self, sample: int) -> bool:
        """One extra window, on the grid, that ends at stream sample `sample` or just after it; next_window()
        hands it out between the grid's windows, in time order. Not added (False) when one is already to come, a
        window handed out ends later, or a window of the grid ends within a quarter hop after it."""
        grid = self.grid_samples
        start = -(-(sample - self.window_samples) // grid) * grid
        if self._extra_start >= 0 or start <= self._last_start or start < 0:
            return False
        k = self._index + max(0, -(-(start - self._next_start) // self.hop_samples))
        while k > self._index and self._start_of(k - 1) >= start:
            k -= 1
        while self._start_of(k) < start:
            k += 1
        if self._start_of(k) - start < self.hop_samples // 4:  # the grid's own window comes as soon
            return False
        self._extra_start = start
        return True

    def _start_of(self, index: int) -> int:
        grid, at = self.grid_samples, self.offset_samples + index * self.hop_samples
        return at if grid == 1 else (at + grid // 2) // grid * grid

    def next_window(self) -> np.ndarray | None:
        """The next window if enough audio has arrived, else None."""
        extra = self._extra_start
        if extra >= 0 and extra < self._next_start and self.ring.written >= extra + self.window_samples:
            self._extra_start = -1
            if extra >= self._oldest():  # else the consumer fell behind: the grid's windows skip ahead
                self.ring.read_float(extra, self.window)
                self.window_start = self._last_start = extra
                self.extra = True
                return self.window
        self.extra = False
        if self.ring.written < self._next_start + self.window_samples:
            return None
        if self._next_start < self._oldest():  # the consumer fell behind: skip to the newest full window
            newest = self._index + (self.ring.written - self.window_samples - self._next_start) // self.hop_samples
            while self._start_of(newest) + self.window_samples > self.ring.written:
                newest -= 1  # the newest window that fits, on the same hop grid
            self.skipped_windows += newest - self._index
            self._index = newest
            self._next_start = self._start_of(newest)
        self.ring.read_float(self._next_start, self.window)
        self.window_start = self._last_start = self._next_start
        self._index += 1
        self._next_start = self._start_of(self._index)
        return self.window
