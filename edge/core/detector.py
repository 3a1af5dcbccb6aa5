"""Scores -> start/end events: per-label smoothing, hysteresis, minimum duration, hold and cooldown, and a fast
onset (one window over a higher bar starts an event without waiting for the average; the average ends it).

Pure NumPy. The per-window path works in preallocated arrays over the watched classes only; Python objects are
made only when something may start or is going on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .events import Event
from .params import param

NO_EVENTS: tuple = ()
# the fast onset's bar and level rise: the lowest bar that starts no more events than the average alone on background
# audio and, for a board profile's allow list, on the devset (`python -m tools onset --sweep`: lower bars are faster
# and start a few more)
ONSET_THRESHOLD = 0.75
ONSET_RISE_DB = 3.0
ONSET_WINDOW_SECONDS = 0.3


@dataclass(frozen=True)
class DetectorParams:
    """How scores become events. The daemon's [detector] section is this class."""

    threshold: float = param(0.5, "default score that starts an event", 0.0, 1.0)
    off_ratio: float = param(0.7, "an event ends below threshold x off_ratio (hysteresis)", 0.0, 1.0)
    thresholds: dict = param({}, "per-label start thresholds, by display name")
    allow: list = param([], "labels to watch, by display name (empty: every label not denied)")
    deny: list = param([], "labels never reported")
    smoothing_windows: int = param(2, "moving average over this many windows", 1, 50)
    onset_threshold: float = param(ONSET_THRESHOLD, "one window's raw score at or above this (and the label's own "
                                   "threshold) starts an event at once, without waiting for the average, when the "
                                   "window is onset_rise_db louder than the one before; the average still ends it "
                                   "(1.0: off)", 0.0, 1.0)
    onset_rise_db: float = param(ONSET_RISE_DB, "how much louder than the previous window a window must be for the "
                                 "fast onset: a sound that begins, not a spike within one that goes on", 0.0, 60.0)
    onset_window_seconds: float = param(ONSET_WINDOW_SECONDS, "where a sound begins (a 10 ms block 12 dB over the "
                                        "50 ms before it), one extra window ending this long after it, for the fast "
                                        "onset only: a start does not wait for the hop grid (0: off)", 0.0, 0.9)
    min_duration_seconds: float = param(0.0, "a score must stay up this long before 'start'", 0.0, 60.0)
    hold_seconds: float = param(1.0, "a score must stay down this long before 'end'", 0.0, 600.0)
    cooldown_seconds: float = param(0.0, "after 'end', no new 'start' of that label for this long", 0.0, 3600.0)
    min_level_dbfs: float = param(-120.0, "skip inference when the window is quieter than this (-120: never)",
                                  -120.0, 0.0)

    @property
    def onset_lead_seconds(self) -> float:
        """How long after a sound begins its onset window ends; 0 when there is none (the fast onset off)."""
        return self.onset_window_seconds if self.onset_threshold < 1.0 else 0.0


class LabelError(InputError):
    """A label name that the model does not have."""


def resolve_labels(names, labels: list[str], key: str) -> list[int]:
    """Class indices of label names (exact, else case-insensitive). LabelError names the key and suggests."""
    index = {name: i for i, name in enumerate(labels)}
    lowered = {name.lower(): i for i, name in enumerate(labels)}
    out = []
    for name in names:
        i = index.get(name, lowered.get(name.lower()))
        if i is None:
            close = [l for l in labels if name.lower() in l.lower()][:3]
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise LabelError(f"{key}: unknown label {name!r}{hint}")
        out.append(i)
    return out


class Detector:
    """Per-window work runs only over the watched classes (all of them without an allow or deny list), in
    preallocated arrays; a quiet window costs two reductions. Event bookkeeping is indexed by class."""

    def __init__(self, labels: list[str], cfg: DetectorParams = DetectorParams(), event_fields: dict | None = None):
        n = len(labels)
        self.labels = labels
        self.cfg = cfg
        deny = set(resolve_labels(cfg.deny, labels, "detector.deny"))
        allow = resolve_labels(cfg.allow, labels, "detector.allow") if cfg.allow else range(n)
        self.watched = np.array(sorted({i for i in allow if i not in deny}), np.intp)
        on = np.full(n, cfg.threshold, np.float32)
        for name, value in cfg.thresholds.items():
            on[resolve_labels([name], labels, "detector.thresholds")[0]] = value
        self.on = on
        self.off = on * np.float32(cfg.off_ratio)
        m = self.watched.size
        windows = cfg.smoothing_windows
        self._gather = m < n  # copy the watched scores out of the 521 (an allow or deny list)
        # the smoothed score is compared as a sum over the history: the thresholds carry the 1/N
        self._on_sum = on[self.watched] * np.float32(windows)
        self._off_sum = self.off[self.watched] * np.float32(windows)
        self._min_on_sum = float(self._on_sum.min()) if m else np.inf  # the quiet-window test
        self._off_list = self._off_sum.tolist()
        self._inv = 1.0 / windows
        fast = cfg.onset_threshold < 1.0
        self._fast_on = np.maximum(on[self.watched], np.float32(cfg.onset_threshold)) if fast else None
        self._min_fast = float(self._fast_on.min()) if fast and m else np.inf
        self._last_level = 0.0  # dBFS of the previous window (0: the first window is no onset)
        self._history = np.zeros((windows, m), np.float32)
        self._slot = 0
        self._sum = np.zeros(m, np.float32)
        self._up = np.zeros(m, bool)  # per-window scratch
        self._onset_raw = np.zeros(m, np.float32)  # an onset window's watched scores
        self._fast_up = np.zeros(m, bool)
        self._interesting = np.zeros(m, bool)
        self._busy = np.zeros(m, bool)  # active or pending, by watched position
        self._busy_count = 0
        self._classes = self.watched.tolist()
        # per class, as Python lists: a few of them are touched per window, one element at a time
        self._active = [False] * n
        self._pending = [False] * n  # above "on", waiting for min_duration
        self._pending_since = [0.0] * n
        self._start = [0.0] * n
        self._last_above = [0.0] * n
        self._cooldown_until = [-np.inf] * n
        self._peak = [0.0] * n
        self._total = [0.0] * n
        self._count = [0] * n
        self._level = [-120.0] * n  # loudest window of the event, dBFS
        self._ids: dict[int, str] = {}
        self._fields = event_fields or {}

    @property
    def active_labels(self) -> list[str]:
        return [self.labels[i] for i, on in enumerate(self._active) if on]

    @property
    def smoothed(self) -> np.ndarray:
        """The smoothed scores of the watched classes (in the order of `watched`); allocates: not for the hot path."""
        return self._sum / np.float32(self._history.shape[0])

    def positions(self, classes: np.ndarray) -> np.ndarray:
        """Where the given class indices sit in `watched` (and so in `smoothed`); LabelError for one not watched."""
        at = np.searchsorted(self.watched, classes)
        missing = [self.labels[c] for c, i in zip(classes.tolist(), at.tolist())
                   if i >= self.watched.size or self.watched[i] != c]
        if missing:
            raise LabelError(f"not watched by this detector: {', '.join(missing)}")
        return at.astype(np.intp)

    def _smooth(self, scores: np.ndarray) -> np.ndarray:
        """Sum of the last N windows of the watched scores (the history starts silent, so below the onset
        threshold one loud first window cannot start an event on its own). Returns the newest raw scores."""
        history = self._history
        latest = history[self._slot]
        if self._gather:
            scores.take(self.watched, out=latest, mode="clip")  # clip: no checked copy (the indices are valid)
        else:
            np.copyto(latest, scores)
        self._slot = (self._slot + 1) % history.shape[0]
        if history.shape[0] == 1:
            np.copyto(self._sum, latest)
        elif history.shape[0] == 2:
            np.add(history[0], history[1], out=self._sum)
        else:
            np.add.reduce(history, axis=0, out=self._sum)
        return latest

    def update(self, scores: np.ndarray, t_start: float, t_end: float, level_dbfs: float):
        """Feed one window's scores (timestamps in unix seconds). Returns the events it caused (often none)."""
        if not self.watched.size:
            return NO_EVENTS
        raw = self._smooth(scores)
        total = self._sum
        fast = self._fast_on is not None and level_dbfs - self._last_level >= self.cfg.onset_rise_db
        self._last_level = level_dbfs
        if not self._busy_count and total.max() < self._min_on_sum and (not fast or raw.max() < self._min_fast):
            return NO_EVENTS  # nothing active or pending, and nothing can start: the usual window
        up, interesting = self._up, self._interesting
        np.greater_equal(total, self._on_sum, out=up)
        if fast:  # a window that begins a sound and clears the higher bar starts at once
            np.greater_equal(raw, self._fast_on, out=self._fast_up)
            np.logical_or(up, self._fast_up, out=up)
        np.logical_or(up, self._busy, out=interesting)
        events = []
        active, pending, classes, off, inv = self._active, self._pending, self._classes, self._off_list, self._inv
        for j in np.flatnonzero(interesting).tolist():
            c = classes[j]
            total_j = total.item(j)
            score = total_j * inv  # the mean of the last N windows
            still = total_j >= off[j]
            if active[c] and still:  # the usual case while a sound goes on, inline
                self._last_above[c] = t_end
                if score > self._peak[c]:
                    self._peak[c] = score
                self._total[c] += score
                self._count[c] += 1
                if level_dbfs > self._level[c]:
                    self._level[c] = level_dbfs
                continue
            if active[c]:
                self._continue(c, score, t_end, still, level_dbfs, events)
            else:
                quick = fast and self._fast_up.item(j)
                self._maybe_start(c, score, t_start, t_end, up.item(j), still or quick, level_dbfs, events)
            busy = active[c] or pending[c]
            if busy != self._busy.item(j):
                self._busy[j] = busy
                self._busy_count += 1 if busy else -1
        return events

    def onset(self, scores: np.ndarray, t_start: float, t_end: float, level_dbfs: float):
        """An extra window that ends just after a sound began: its raw scores may start events (the fast onset's
        bar, onset_threshold), nothing else. The smoothing, the ends and the previous window's level are the hop
        grid's."""
        if self._fast_on is None or not self.watched.size:
            return NO_EVENTS
        raw = self._onset_raw
        if self._gather:
            scores.take(self.watched, out=raw, mode="clip")
        else:
            np.copyto(raw, scores)
        if raw.max() < self._min_fast:
            return NO_EVENTS
        np.greater_equal(raw, self._fast_on, out=self._fast_up)
        events = []
        for j in np.flatnonzero(self._fast_up).tolist():
            c = self._classes[j]
            if self._active[c] or self._pending[c]:
                continue
            self._maybe_start(c, raw.item(j), t_start, t_end, True, True, level_dbfs, events)
            busy = self._active[c] or self._pending[c]
            if busy != self._busy.item(j):
                self._busy[j] = busy
                self._busy_count += 1 if busy else -1
        return events

    def _maybe_start(self, c, score, t_start, t_end, up, still, level, events):
        if not self._pending[c]:
            if not up or t_start < self._cooldown_until[c]:
                return
            self._pending[c] = True
            self._pending_since[c] = t_start
            self._peak[c], self._total[c], self._count[c], self._level[c] = score, 0.0, 0, level
        if not still:
            self._pending[c] = False
            return
        self._peak[c] = max(self._peak[c], score)
        self._total[c] += score
        self._count[c] += 1
        self._level[c] = max(self._level[c], level)
        if t_end - self._pending_since[c] >= self.cfg.min_duration_seconds:
            self._active[c] = True
            self._start[c] = self._pending_since[c]
            self._last_above[c] = t_end
            self._pending[c] = False
            self._ids[c] = uuid.uuid4().hex
            events.append(self._event("start", c, None))

    def _continue(self, c, score, t_end, still, level, events):
        if still:
            self._last_above[c] = t_end
            self._peak[c] = max(self._peak[c], score)
            self._total[c] += score
            self._count[c] += 1
            self._level[c] = max(self._level[c], level)
        elif t_end - self._last_above[c] >= self.cfg.hold_seconds:
            self._end(c, events)

    def _end(self, c, events):
        self._active[c] = False
        end = self._last_above[c]
        self._cooldown_until[c] = end + self.cfg.cooldown_seconds
        events.append(self._event("end", c, end))
        del self._ids[c]

    def flush(self) -> list[Event]:
        """End every active event (shutdown)."""
        events: list[Event] = []
        for c in [i for i, on in enumerate(self._active) if on]:
            self._end(c, events)
        self._pending = [False] * len(self._pending)
        self._busy[:] = False
        self._busy_count = 0
        return events

    def _event(self, kind: str, c: int, end: float | None) -> Event:
        start = self._start[c]
        duration = (end if end is not None else self._last_above[c]) - start
        return Event(type=kind, event_id=self._ids[c], label=self.labels[c], class_index=c, start_ts=start,
                     end_ts=end, peak_score=float(self._peak[c]),
                     mean_score=float(self._total[c] / max(1, self._count[c])), duration_s=max(0.0, duration),
                     level_dbfs=float(self._level[c]), **self._fields)

    def with_fields(self, **fields) -> None:
        """Fields stamped on every event (device id, model, delegate in use)."""
        self._fields.update(fields)


def level_dbfs(window: np.ndarray) -> float:
    """RMS level of a float32 window in dBFS (a full-scale sine is -3)."""
    power = float(np.dot(window, window)) / window.size
    return 10.0 * np.log10(power) if power > 1e-12 else -120.0

