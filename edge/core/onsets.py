"""Where a sound begins, from the level of 10 ms blocks of the incoming audio.

A block is an onset when it is RISE_DB louder than the loudest of the BEFORE blocks just before it and louder
than FLOOR_DBFS: a sound that begins, not one that goes on (however loud) nor one that fades in. After an onset
no other is reported for REFRACTORY_S.

The window loop uses it to add one window that ends a fixed time after a sound began (the fast onset's window),
and the capture thread uses the same rule to wake the processing loop for it; both look through StreamOnsets,
once per that time of audio (soon enough for the window) rather than at every read.
"""

from __future__ import annotations

import math

import numpy as np

RISE_DB = 12.0
FLOOR_DBFS = -50.0
BEFORE = 5
REFRACTORY_S = 0.5
BLOCK_S = 0.01


class LevelRise:
    """Feed interleaved int16 chunks with scan(); it returns the frame offset (within the chunk) of the first
    block where a sound begins, or -1. State carries over from chunk to chunk; buffers are allocated here, for
    chunks of up to max_chunk_frames frames."""

    def __init__(self, rate_hz: int, channels: int = 1, max_chunk_frames: int = 8192):
        self.block = max(1, round(rate_hz * BLOCK_S))  # frames per block
        self.channels = channels
        self._refractory_blocks = round(REFRACTORY_S / BLOCK_S)
        self._scratch = np.zeros((max_chunk_frames + self.block) * channels, np.float32)
        self._powers = np.zeros(max_chunk_frames // self.block + 2, np.float32)
        self._carry = 0  # frames of a block begun in the previous chunk (its samples are in _scratch[:carry])
        self._before = [math.inf] * BEFORE  # sums of squares of the last blocks, oldest first
        self._quiet_for = self._refractory_blocks  # blocks since the last onset
        self._floor_sum = 10.0 ** (FLOOR_DBFS / 10.0) * (32768.0 ** 2) * self.block * channels
        self._rise_factor = 10.0 ** (RISE_DB / 10.0)
        self.onsets = 0  # a counter, for tests

    def scan(self, chunk: np.ndarray) -> int:
        ch = self.channels
        frames = chunk.size // ch
        most = self._scratch.size // ch - self.block
        if frames <= most:
            return self._scan(chunk, frames)
        found = -1
        for first in range(0, frames, most):
            at = self._scan(chunk[first * ch:(first + most) * ch], min(most, frames - first))
            if found < 0 and at >= 0:
                found = first + at
        return found

    def _scan(self, chunk: np.ndarray, frames: int) -> int:
        ch, block = self.channels, self.block
        carry = self._carry
        total = carry + frames
        blocks = total // block
        scratch = self._scratch
        np.copyto(scratch[carry * ch:total * ch], chunk[:frames * ch], casting="unsafe")
        found = -1
        if blocks:
            rows = scratch[:blocks * block * ch].reshape(blocks, block * ch)
            powers = self._powers[:blocks]
            np.square(rows, out=rows)  # rows end before the carried samples: those stay as they were
            np.add.reduce(rows, axis=1, out=powers)  # sum of squares per block (ufuncs the front end has loaded)
            # in the power domain (sums over a block): a rise of RISE_DB is a factor, the floor a sum
            floor, rise, before = self._floor_sum, self._rise_factor, self._before
            quiet_for, refractory = self._quiet_for, self._refractory_blocks
            for i, power in enumerate(powers.tolist()):
                quiet_for += 1
                if found < 0 and quiet_for > refractory and power >= floor and power >= rise * max(before):
                    found = max(0, i * block - carry)
                    quiet_for = 0
                    self.onsets += 1
                before.pop(0)
                before.append(power)
            self._quiet_for = quiet_for
        rest = total - blocks * block
        if rest and blocks:  # the start of the next block, kept for the next chunk (without blocks: in place)
            scratch[:rest * ch] = scratch[blocks * block * ch:total * ch]
        self._carry = rest
        return found


class StreamOnsets:
    """LevelRise over a live stream, looked at once per `span_frames` of audio instead of at every read.

    A read that wakes after the device's wait starts with cold caches: on a shared x86 core the first NumPy call
    then costs ~60-100 us against ~5 us for the whole scan when warm, so scanning four 64 ms reads together costs
    about what one costs alone. The onset window ends `span_frames` (its lead) after a sound began, so a sound
    found up to that late still gets its window as soon as the audio for it is there: no latency is added.

    add(chunk) keeps a reference to the chunk (no copy) and returns, when it scans, how many frames before the
    end of this chunk the sound began; -1: none, or not scanned yet."""

    def __init__(self, rate_hz: int, channels: int, span_frames: int, max_chunk_frames: int = 8192):
        self.rise = LevelRise(rate_hz, channels, max_chunk_frames)
        self.channels = channels
        self.span_frames = max(1, span_frames)
        self._held: list = []  # chunks not scanned yet; slots reused, emptied once scanned
        self._count = 0
        self._frames = 0

    def add(self, chunk: np.ndarray) -> int:
        frames = chunk.size // self.channels
        if self._count < len(self._held):
            self._held[self._count] = chunk
        else:
            self._held.append(chunk)
        self._count += 1
        self._frames += frames
        if self._frames + frames <= self.span_frames:  # one more read of this size still fits in the span
            return -1
        return self.scan_held()

    def scan_held(self) -> int:
        """Scan what add() kept: frames from where a sound began to the end of the last chunk, or -1."""
        held, found, done = self._held, -1, 0
        for i in range(self._count):
            chunk = held[i]
            held[i] = None
            at = self.rise.scan(chunk)
            if found < 0 and at >= 0:
                found = self._frames - done - at
            done += chunk.size // self.channels
        self._count = self._frames = 0
        return found
