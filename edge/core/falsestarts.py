"""False starts per day from background audio: a tail fit of the detector's start statistic and its extrapolation.

Pure NumPy. The method, stated once here and printed by `edge-audio calibrate`:

  1. start statistic: the smoothed score of a window, or, when the detector needs `min_duration_seconds`, the
     lowest of that score and the next windows' scores divided by `off_ratio` (a start needs the first window at or
     above "on" and the following ones at or above "off" until the minimum duration is reached);
  2. logit: z = log(s / (1 - s)); the scores of an absent class live far below 0.5, and their tail is straighter in
     logit than in score;
  3. peaks over threshold: above a tail level u (the 97th percentile of the windows, lower if fewer than MIN_CLUSTERS
     bursts cross it), each
     burst counts once (bursts closer than the detector's hold + cooldown are one: the detector could not start
     twice), and the burst peaks' excess over u is fitted with an exponential (maximum likelihood: the mean excess);
  4. extrapolation: the rate of bursts above z is rate(u) * exp(-(z - u) / sigma), per day of audio; the on-threshold
     is the z where that rate equals the target, and never below the highest background score seen (when the
     target allows k false starts in the background's own length, never below its k+1-th highest burst);
  5. contamination: a burst far above what the rest of the tail predicts (expected less than CONTAMINATION_P times
     in the whole background) is the watched sound inside the background, not background: it is reported with its
     figures and left out of the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SECONDS_PER_DAY = 86400.0
MIN_CLUSTERS = 10  # bursts above the tail level wanted for the fit
TAIL_QUANTILE = 0.97  # the tail starts no lower than this quantile of the windows (when enough bursts cross it)
FEWEST_CLUSTERS = 6  # below this many bursts there is no tail to fit
CONTAMINATION_P = 0.01  # a burst expected less often than this in the whole background is not background
SCORE_EPS = 1e-6  # scores are clipped to [eps, 1 - eps] before the logit
THRESHOLD_DECIMALS = 3


def logit(p):
    p = np.clip(np.asarray(p, np.float64), SCORE_EPS, 1.0 - SCORE_EPS)
    return np.log(p / (1.0 - p))


def sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + math.exp(-z))) if z > -700 else 0.0


def windows_to_start(min_duration_s: float, window_s: float, hop_s: float) -> int:
    """How many windows after the first must stay up before the detector starts an event."""
    return max(0, math.ceil((min_duration_s - window_s) / hop_s - 1e-9))


def start_statistic(smoothed: np.ndarray, off_ratio: float, extra_windows: int) -> np.ndarray:
    """Per window, the highest on-threshold at which an event would start there (see the module's step 1)."""
    s = np.asarray(smoothed, np.float64)
    if extra_windows == 0 or s.size == 0:
        return s.copy()
    out = s.copy()
    held = s / max(off_ratio, 1e-6)
    for j in range(1, extra_windows + 1):
        ahead = np.full(s.size, -np.inf)  # a recording that ends first cannot start an event
        ahead[:-j] = held[j:]
        np.minimum(out, ahead, out=out)
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class Burst:
    """A run of windows above the tail level (one possible start), in one segment of audio."""

    segment: int
    first: int  # window index in its segment
    windows: int
    peak: float  # the start statistic's highest score in it


def bursts(segments: list[np.ndarray], level: float, gap_windows: int) -> list[Burst]:
    """Runs of scores above `level`; runs closer than `gap_windows` windows are one burst."""
    found = []
    for k, s in enumerate(segments):
        idx = np.nonzero(np.asarray(s) > level)[0]
        if idx.size == 0:
            continue
        breaks = np.nonzero(np.diff(idx) > gap_windows + 1)[0]
        for a, b in zip(np.r_[0, breaks + 1], np.r_[breaks, idx.size - 1]):
            first, last = int(idx[a]), int(idx[b])
            found.append(Burst(k, first, last - first + 1, float(np.max(s[first:last + 1]))))
    return found


@dataclass
class TailFit:
    """The fitted tail of one label's background start statistic."""

    days: float  # background audio, in days
    windows: int
    max_score: float  # the highest clean background score
    level: float = 0.0  # u, in logit
    sigma: float = 0.0  # exponential scale of the burst peaks' excess over u, in logit
    clusters: int = 0  # clean bursts above u
    peaks: list[float] = field(default_factory=list)  # clean burst peaks above u, highest first (scores)
    contaminated: list[Burst] = field(default_factory=list)
    problem: str = ""  # why there is no fit (too little background above the floor)

    def rate_per_day(self, threshold: float) -> float:
        """Expected false starts per day at this on-threshold, by the fitted tail (NaN without a fit)."""
        if self.problem:
            return math.nan
        z = float(logit(threshold))
        return self.clusters / self.days * math.exp(-(z - self.level) / self.sigma)

    def threshold_for(self, target_per_day: float) -> float:
        """The lowest on-threshold (rounded up) with at most `target_per_day` expected false starts, and never below
        what the background itself shows: above its highest clean score when the target allows less than one
        false start in the background's length (the usual case), above its k+1-th highest burst when it allows k."""
        z = self.level + self.sigma * math.log(self.clusters / self.days / target_per_day)
        return max(round_up(sigmoid(z)), self.floor(target_per_day))

    def floor(self, target_per_day: float) -> float:
        allowed = int(target_per_day * self.days)
        if allowed == 0:
            return above(self.max_score)
        return above(self.peaks[allowed]) if allowed < len(self.peaks) else 0.0

    def burst_rarity(self, peak: float) -> float:
        """Expected number of bursts this high in the whole background, by the fit."""
        return self.clusters * math.exp(-(float(logit(peak)) - self.level) / self.sigma)


def round_up(x: float) -> float:
    q = 10 ** THRESHOLD_DECIMALS
    return min(1.0, math.ceil(x * q - 1e-9) / q)


def above(score: float) -> float:
    """The lowest printed threshold strictly above `score` (a start needs score >= threshold)."""
    q = 10 ** THRESHOLD_DECIMALS
    return min(1.0, math.floor(score * q + 1e-9) / q + 1.0 / q)


def _fit(segments_z: list[np.ndarray], gap: int) -> tuple[float, list[Burst]] | None:
    """The tail level u and the bursts above it. u starts at the TAIL_QUANTILE of the windows and goes down
    through the observed score levels until MIN_CLUSTERS bursts cross it; it sits midway between two observed
    levels, so quantized scores (the int8 models' steps of 1/256) do not bias the excess."""
    every = np.concatenate(segments_z)
    values = np.unique(every)
    values = values[values > float(logit(SCORE_EPS)) + 1e-9][::-1]  # a score of 0 says nothing about the tail
    start = float(np.quantile(every, TAIL_QUANTILE))
    best = None
    for hi, lo in zip(values[:-1], values[1:]):
        if lo > start:
            continue
        level = 0.5 * (hi + lo)
        found = [Burst(b.segment, b.first, b.windows, sigmoid(b.peak)) for b in bursts(segments_z, level, gap)]
        best = (level, found)
        if len(found) >= MIN_CLUSTERS:
            break
    return best


def fit_tail(segments: list[np.ndarray], seconds_per_window: float, gap_windows: int) -> TailFit:
    """Fit the tail of background start statistics (one array per stretch of continuous audio)."""
    segments = [np.asarray(s, np.float64) for s in segments if len(s)]
    n = int(sum(s.size for s in segments))
    days = n * seconds_per_window / SECONDS_PER_DAY
    seen = float(max((s.max() for s in segments), default=0.0))
    fit = TailFit(days=days, windows=n, max_score=seen)
    if n == 0:
        fit.problem = "no background windows"
        return fit
    zs = [logit(s) for s in segments]
    chosen = _fit(zs, gap_windows)
    if chosen is None or len(chosen[1]) < FEWEST_CLUSTERS:
        count = 0 if chosen is None else len(chosen[1])
        fit.problem = (f"only {count} burst(s) above zero in {n} windows: too little of the tail to fit "
                       f"(at least {FEWEST_CLUSTERS} are needed; listen longer)")
        return fit
    level, found = chosen
    clean, dirty = _split_contamination(found, level, len(found))
    fit.level, fit.clusters, fit.contaminated = level, len(clean), dirty
    fit.peaks = [b.peak for b in clean]
    fit.sigma = max(float(np.mean([float(logit(b.peak)) - level for b in clean])), 1e-3)
    if dirty:
        fit.max_score = max(b.peak for b in clean)
    return fit


def _split_contamination(found: list[Burst], level: float, n: int) -> tuple[list[Burst], list[Burst]]:
    """Take the highest bursts off one by one while each is far above what the bursts below it predict: the
    expected number of bursts that high, by the exponential fitted to the rest, is below CONTAMINATION_P. At most
    a quarter of the bursts can be called contamination (beyond that the background itself is like this)."""
    ordered = sorted(found, key=lambda b: b.peak, reverse=True)
    dirty = 0
    for k in range(max(0, len(ordered) // 4)):
        rest = ordered[k + 1:]
        excess = [float(logit(b.peak)) - level for b in rest]
        sigma = max(float(np.mean(excess)), 1e-3)
        expected = len(rest) * math.exp(-(float(logit(ordered[k].peak)) - level) / sigma)
        if expected < CONTAMINATION_P:
            dirty = k + 1
    return ordered[dirty:], ordered[:dirty]
