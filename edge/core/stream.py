"""The one window loop: audio chunks in, fixed overlapping windows out.

    chunk (int16, interleaved, any rate) -> Framer.push -> Framer.next_window -> (window, start_sample)

Every path that turns audio into windows goes through WindowLoop: `edge-audio classify`, the daemon, the
benchmark, the host tools and the hot-path test. What happens to each window (classify, detect, publish, time)
is the caller's loop body:

    loop = WindowLoop(15600, hop_samples_for(0.48), rate_in_hz=44100, channels=2, grid_samples=160)
    for window, start in loop.feed(chunk): ...      # as audio arrives
    for window, start in loop.end(): ...            # end of a recording: the tail, padded like YAMNet's reference

The window is one preallocated array, overwritten by the next one: copy it to keep it.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .errors import InputError
from .framing import Framer
from .onsets import StreamOnsets
from .resample import check_rate

HOP_SECONDS = 0.48  # YAMNet's reference patch hop: every default hop in the kit is this one
HOP_RANGE_SECONDS = (0.05, 5.0)
CHUNK_FRAMES = 1024  # frames per read: one ALSA period by default; files and the benchmark read the same
MAX_CHUNK_FRAMES = 8192  # the largest chunk the framer's buffers take in one piece (larger ones are split)
NO_WINDOWS: tuple = ()


def hop_samples_for(hop_seconds: float, rate_hz: int = 16000) -> int:
    """The hop in samples, or InputError for a hop outside HOP_RANGE_SECONDS."""
    lo, hi = HOP_RANGE_SECONDS
    if not lo <= hop_seconds <= hi:
        raise InputError(f"hop {hop_seconds} s is out of range ({lo} to {hi} s)")
    return int(round(hop_seconds * rate_hz))


class WindowLoop:
    """push audio -> next window, for live streams and recordings alike."""

    def __init__(self, window_samples: int, hop_samples: int, rate_in_hz: int = 16000, channels: int = 1,
                 rate_hz: int = 16000, max_chunk_frames: int = MAX_CHUNK_FRAMES, grid_samples: int = 1,
                 onset_lead_samples: int = 0, offset_samples: int = 0, history_samples: int = 0):
        """`grid_samples`: windows start on multiples of it (a classifier's `grid_samples`: its front end's STFT
        hop for a log-mel model, so frames are shared at any hop; 1 for a waveform model).
        `onset_lead_samples` > 0: where a sound begins (edge.core.onsets), one extra window that ends this many
        samples later (`extra` is True while it is the window handed out); 0: the grid's windows only.
        `offset_samples`: the grid's first window starts this far into the stream (less than a hop; 0 for a
        recording: its first window covers its start). `history_samples`: audio the ring keeps behind what the
        windows need (a clip's pre-roll)."""
        try:
            check_rate(rate_in_hz, rate_hz, max_chunk_frames)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self.framer = Framer(window_samples, hop_samples, rate_in_hz, channels, rate_hz, max_chunk_frames,
                             grid_samples, offset_samples, history_samples)
        self._lead = onset_lead_samples
        self._onsets: StreamOnsets | None = None  # the loop's own scan, made when a caller does not pass them

    @property
    def extra(self) -> bool:
        """The window just handed out is an onset's extra window, not one of the hop grid."""
        return self.framer.extra

    @property
    def rate_in_hz(self) -> int:
        return self.framer.rate_in_hz

    @property
    def channels(self) -> int:
        return self.framer.channels

    def frames_wanted(self) -> int:
        """Input frames still to come before the next window is complete (0: one is ready): a live loop sleeps
        until then. At the input rate, so a resampled stream may need a frame or two more."""
        framer = self.framer
        samples = framer.samples_until_next_window()
        if framer.rate_in_hz == framer.rate_hz:
            return samples
        return samples * framer.rate_in_hz // framer.rate_hz

    def feed(self, chunk: np.ndarray, onset: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """Push interleaved int16 PCM; yield every window it completes with its first sample's index. With onset
        windows on, `onset` is how many frames before the end of this chunk a sound began (-1: none found) when
        the caller has looked already (the capture thread does, as audio arrives); None: the loop looks itself,
        the same way (edge.core.onsets.StreamOnsets)."""
        self.push(chunk, onset)
        if self.framer.samples_until_next_window():
            return NO_WINDOWS  # most reads complete no window: nothing to iterate, no generator made
        return self._drain()

    def push(self, chunk: np.ndarray, onset: int | None = None) -> None:
        """feed() without taking the windows: a caller serving several streams takes them one at a time with
        next_window(), in the order it chooses (the ring holds a hop and a chunk beyond the window: push again
        before taking them all and the oldest grid windows are skipped, counted in framer.skipped_windows)."""
        framer = self.framer
        framer.push(chunk)
        if not self._lead:
            behind = -1
        elif onset is not None:
            behind = onset
        else:
            if self._onsets is None:
                self._onsets = StreamOnsets(framer.rate_in_hz, framer.channels,
                                            self._lead * framer.rate_in_hz // framer.rate_hz, framer.max_chunk_frames)
            behind = self._onsets.add(chunk)
        self._onset_window(behind)

    def ready(self) -> bool:
        """A window can be taken now."""
        return not self.framer.samples_until_next_window()

    def next_window(self) -> tuple[np.ndarray, int] | None:
        """The next window and its first sample's index, or None when the audio for it has not arrived."""
        framer = self.framer
        window = framer.next_window()
        return None if window is None else (window, framer.window_start)

    def finish(self, onset: int | None = None) -> None:
        """The end of a recording, for a caller that takes windows one at a time: the onset window and the
        resampler's tail now; pad() once the windows are taken."""
        if self._lead:
            self._onset_window(onset if onset is not None else
                               self._onsets.scan_held() if self._onsets is not None else -1)
        self.framer.finish()

    def pad(self) -> None:
        """After finish() and the windows it made: one padded window over audio not yet covered."""
        self.framer.pad_to_complete()

    def end(self, onset: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """End of a recording: the resampler's tail, then one padded window over audio not yet covered. `onset`
        as in feed(), for the audio fed since it was last told (the capture thread looks at what it still holds
        when a file ends); None: the loop looks at what its own scan still holds."""
        self.finish(onset)
        yield from self._drain()
        self.pad()
        yield from self._drain()

    def _onset_window(self, behind: int) -> None:
        """A sound began `behind` input frames before the end of what was fed (-1: none): its onset window."""
        if behind >= 0:
            framer = self.framer
            framer.add_window_ending_after(framer.ring.written - behind * framer.rate_hz // framer.rate_in_hz
                                           + self._lead)

    def _drain(self) -> Iterator[tuple[np.ndarray, int]]:
        framer = self.framer
        while (window := framer.next_window()) is not None:
            yield window, framer.window_start


def recording_windows(pcm: np.ndarray, loop: WindowLoop, chunk_frames: int = CHUNK_FRAMES
                      ) -> Iterator[tuple[np.ndarray, int]]:
    """Every window of a whole recording (interleaved int16 PCM), read in chunks as a device would deliver it."""
    flat = np.ascontiguousarray(pcm).reshape(-1)
    step = chunk_frames * loop.channels
    for i in range(0, flat.size, step):
        yield from loop.feed(flat[i:i + step])
    yield from loop.end()
