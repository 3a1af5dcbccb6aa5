"""One source's open clips: which stretch of its 16 kHz ring each one takes, and what the privacy filter heard.

The window loop's ring keeps the clip's pre-roll behind what its windows need (WindowLoop history_samples), so a
clip opened when its event starts reaches back `pre` seconds before the event's first sample. After each grid
window, every open clip takes the audio that no window still to come covers (the samples before the next grid
window's start): with privacy "mute" the stretches of speech windows are silenced on the way, with "withhold" a
speech window over the clip's span withholds it. The event's end fixes the clip's last sample (end + post, within
max_seconds); once the clip has taken it, the clip is complete. No audio-path work while no clip is open but one
speech score per window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clipparams import ClipParams

WITHHELD = "withheld: speech"


@dataclass
class Tap:
    event_id: str
    label: str
    event_start: int  # the event's first sample (16 kHz stream index)
    begin: int  # the clip's first sample
    pos: int  # the next sample to take
    limit: int  # one past its last sample (event start + max until the end is known)
    filtered: bool  # the privacy filter looks at it
    end_known: bool = False
    too_long: bool = False  # the event outlasted max_seconds: the clip keeps its first part
    status: str = ""  # "" while it runs; else what became of it (withheld)

    @property
    def complete(self) -> bool:
        return self.end_known and self.pos >= self.limit


class SpeechWindows:
    """The last windows' starts and speech scores (the most of the speech classes), preallocated."""

    def __init__(self, count: int, speech_classes: np.ndarray):
        self.starts = np.full(count, -1, np.int64)
        self.speech = np.zeros(count, np.float32)
        self._next = 0
        self._classes = speech_classes
        self._scores = np.zeros(max(1, speech_classes.size), np.float32)

    def note(self, start: int, scores: np.ndarray) -> float:
        i = self._next
        self.starts[i] = start
        if self._classes.size:
            scores.take(self._classes, out=self._scores, mode="clip")
            self.speech[i] = self._scores.max()
        self._next = (i + 1) % self.starts.size
        return float(self.speech[i])

    def spans(self, lo: int, hi: int, window: int, threshold: float) -> list[tuple[int, int]]:
        """The stretches of [lo, hi) that a window scored as speech covers."""
        hits = np.flatnonzero((self.speech >= threshold) & (self.starts >= 0) & (self.starts < hi)
                              & (self.starts + window > lo))
        return [(max(lo, int(self.starts[k])), min(hi, int(self.starts[k]) + window)) for k in hits]


class ClipTaps:
    """open() at an event's start, close() at its end, take() after every grid window."""

    def __init__(self, params: ClipParams, speech_classes: np.ndarray, window_samples: int, hop_samples: int,
                 rate_hz: int, history_samples: int):
        self.params = params
        self.rate = rate_hz
        self.window = window_samples
        self.pre = round(params.pre_seconds * rate_hz)
        self.post = round(params.post_seconds * rate_hz)
        self.most = round(params.max_seconds * rate_hz)
        # every window whose audio the ring still holds (a clip's pre-roll included)
        self.speech = SpeechWindows((window_samples + history_samples) // hop_samples + 4, speech_classes)
        self.hears_speech = bool(speech_classes.size)
        self.open_taps: dict[str, Tap] = {}

    def open(self, event_id: str, label: str, event_start: int, oldest: int) -> Tap:
        begin = max(event_start - self.pre, oldest, 0)
        tap = Tap(event_id, label, event_start, begin, begin, begin + self.most, self.params.filtered(label))
        self.open_taps[event_id] = tap
        return tap

    def close(self, event_id: str, event_end: int) -> Tap | None:
        tap = self.open_taps.get(event_id)
        if tap is not None:
            want = event_end + self.post
            tap.too_long = want > tap.limit
            tap.limit = max(tap.pos, min(tap.limit, want))
            tap.end_known = True
        return tap

    def note(self, start: int, scores: np.ndarray) -> None:
        """A grid window's scores (every one, also while no clip is open: the pre-roll's windows count)."""
        self.speech.note(start, scores)

    def take(self, horizon: int, oldest: int, send) -> list[Tap]:
        """Move each open clip's audio up to `horizon` (no window to come covers what is before it): send(tap,
        start, stop, muted spans). Returns the taps that are done (complete or withheld), no longer open."""
        done = []
        threshold, p = self.params.speech_threshold, self.params
        for tap in self.open_taps.values():
            if tap.filtered and p.privacy == "withhold" and self.speech.spans(tap.begin, min(horizon, tap.limit),
                                                                             self.window, threshold):
                tap.status = WITHHELD
                done.append(tap)
                continue
            if tap.pos < oldest:  # the ring moved past it (a loop far behind): the clip skips the gap
                tap.pos = oldest
            stop = min(horizon, tap.limit)
            if stop > tap.pos:
                muted = self.speech.spans(tap.pos, stop, self.window, threshold) \
                    if tap.filtered and p.privacy == "mute" else []
                send(tap, tap.pos, stop, muted)
                tap.pos = stop
            if tap.complete or tap.status:
                done.append(tap)
        for tap in done:
            self.open_taps.pop(tap.event_id, None)
        return done

    def drop(self, event_id: str) -> None:
        self.open_taps.pop(event_id, None)
