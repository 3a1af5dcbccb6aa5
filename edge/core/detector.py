"""Scores -> start/end events: per-label smoothing, hysteresis, minimum duration, hold and cooldown.

Pure NumPy. The per-window path works in preallocated arrays; Python objects are made only when an event
happens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import numpy as np

from .errors import InputError
from .events import Event
from .params import param

NO_EVENTS: tuple = ()


@dataclass(frozen=True)
class DetectorParams:
    """How scores become events. The daemon's [detector] section is this class."""

    threshold: float = param(0.5, "default score that starts an event", 0.0, 1.0)
    off_ratio: float = param(0.7, "an event ends below threshold x off_ratio (hysteresis)", 0.0, 1.0)
    thresholds: dict = param({}, "per-label start thresholds, by display name")
    allow: list = param([], "labels to watch, by display name (empty: every label not denied)")
    deny: list = param([], "labels never reported")
    smoothing_windows: int = param(2, "moving average over this many windows", 1, 50)
    min_duration_seconds: float = param(0.0, "a score must stay up this long before 'start'", 0.0, 60.0)
    hold_seconds: float = param(1.0, "a score must stay down this long before 'end'", 0.0, 600.0)
    cooldown_seconds: float = param(0.0, "after 'end', no new 'start' of that label for this long", 0.0, 3600.0)
    min_level_dbfs: float = param(-120.0, "skip inference when the window is quieter than this (-120: never)",
                                  -120.0, 0.0)


def with_model_thresholds(params: DetectorParams, thresholds: dict) -> DetectorParams:
    """The parameters with a model bundle's per-label thresholds beneath the configuration's: a label the
    configuration sets keeps its value, the others take the bundle's. With no `allow` list, the bundle's labels
    are the ones watched (a bundle trained for its own sounds names them; its "background" has no threshold)."""
    if not thresholds:
        return params
    return replace(params, thresholds={**thresholds, **params.thresholds}, allow=params.allow or list(thresholds))


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
    def __init__(self, labels: list[str], cfg: DetectorParams = DetectorParams(), event_fields: dict | None = None):
        n = len(labels)
        self.labels = labels
        self.cfg = cfg
        deny = set(resolve_labels(cfg.deny, labels, "detector.deny"))
        allow = resolve_labels(cfg.allow, labels, "detector.allow") if cfg.allow else range(n)
        self.watched = np.array([i for i in allow if i not in deny], np.intp)
        self.on = np.full(n, cfg.threshold, np.float32)
        for name, value in cfg.thresholds.items():
            self.on[resolve_labels([name], labels, "detector.thresholds")[0]] = value
        self.off = self.on * np.float32(cfg.off_ratio)
        self._history = np.zeros((cfg.smoothing_windows, n), np.float32)
        self._slot = 0
        self.smoothed = np.zeros(n, np.float32)
        self._watched_mask = np.zeros(n, bool)
        self._watched_mask[self.watched] = True
        self._active = np.zeros(n, bool)
        self._pending = np.zeros(n, bool)  # above "on", waiting for min_duration
        self._pending_since = np.zeros(n)
        self._up = np.zeros(n, bool)  # per-window scratch
        self._still = np.zeros(n, bool)
        self._interesting = np.zeros(n, bool)
        self._start = np.zeros(n)
        self._last_above = np.zeros(n)
        self._cooldown_until = np.full(n, -np.inf)
        self._peak = np.zeros(n, np.float32)
        self._sum = np.zeros(n)
        self._count = np.zeros(n, np.int64)
        self._level = np.full(n, -120.0)  # loudest window of the event, dBFS
        self._ids: dict[int, str] = {}
        self._fields = event_fields or {}

    @property
    def active_labels(self) -> list[str]:
        return [self.labels[i] for i in np.nonzero(self._active)[0]]

    def _smooth(self, scores: np.ndarray) -> np.ndarray:
        """Mean of the last N windows (the history starts silent, so one loud first window cannot start an event
        on its own)."""
        self._history[self._slot] = scores
        self._slot = (self._slot + 1) % self._history.shape[0]
        np.sum(self._history, axis=0, out=self.smoothed)
        np.multiply(self.smoothed, np.float32(1.0 / self._history.shape[0]), out=self.smoothed)
        return self.smoothed

    def update(self, scores: np.ndarray, t_start: float, t_end: float, level_dbfs: float):
        """Feed one window's scores (timestamps in unix seconds). Returns the events it caused (often none)."""
        s = self._smooth(scores)
        up, still, interesting = self._up, self._still, self._interesting
        np.greater_equal(s, self.on, out=up)
        np.greater_equal(s, self.off, out=still)
        np.logical_and(up, self._watched_mask, out=interesting)  # only watched labels become active or pending
        np.logical_or(interesting, self._active, out=interesting)
        np.logical_or(interesting, self._pending, out=interesting)
        if not interesting.any():
            return NO_EVENTS
        events = []
        for c in np.nonzero(interesting)[0].tolist():
            if self._active[c]:
                self._continue(c, s[c], t_end, still[c], level_dbfs, events)
            else:
                self._maybe_start(c, s[c], t_start, t_end, up[c], still[c], level_dbfs, events)
        return events

    def _maybe_start(self, c, score, t_start, t_end, up, still, level, events):
        if not self._pending[c]:
            if not up or t_start < self._cooldown_until[c]:
                return
            self._pending[c] = True
            self._pending_since[c] = t_start
            self._peak[c], self._sum[c], self._count[c], self._level[c] = score, 0.0, 0, level
        if not still:
            self._pending[c] = False
            return
        self._peak[c] = max(self._peak[c], score)
        self._sum[c] += score
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
            self._sum[c] += score
            self._count[c] += 1
            self._level[c] = max(self._level[c], level)
        elif t_end - self._last_above[c] >= self.cfg.hold_seconds:
            self._end(c, events)

    def _end(self, c, events):
        self._active[c] = False
        end = float(self._last_above[c])
        self._cooldown_until[c] = end + self.cfg.cooldown_seconds
        events.append(self._event("end", c, end))
        del self._ids[c]

    def flush(self) -> list[Event]:
        """End every active event (shutdown)."""
        events: list[Event] = []
        for c in np.nonzero(self._active)[0]:
            self._end(int(c), events)
        self._pending[:] = False
        return events

    def _event(self, kind: str, c: int, end: float | None) -> Event:
        start = float(self._start[c])
        duration = (end if end is not None else float(self._last_above[c])) - start
        return Event(type=kind, event_id=self._ids[c], label=self.labels[c], class_index=c, start_ts=start,
                     end_ts=end, peak_score=float(self._peak[c]),
                     mean_score=float(self._sum[c] / max(1, self._count[c])), duration_s=max(0.0, duration),
                     level_dbfs=float(self._level[c]), **self._fields)

    def with_fields(self, **fields) -> None:
        """Fields stamped on every event (device id, model, delegate in use)."""
        self._fields.update(fields)


def level_dbfs(window: np.ndarray) -> float:
    """RMS level of a float32 window in dBFS (a full-scale sine is -3)."""
    power = float(np.dot(window, window)) / window.size
    return 10.0 * np.log10(power) if power > 1e-12 else -120.0

