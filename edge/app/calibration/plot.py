"""One PNG per calibrated label: the background's scores, the positives', the chosen threshold and the expected
false starts per day, on a logit axis. matplotlib is optional (`pip install 'edge-audio[plot]'`)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ...core.falsestarts import bursts, logit

TICKS = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 0.999)


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "label"


def draw_all(results, heard, cfg, target: float, folder: Path, statistics, with_positives: bool) -> str:
    """Draw every label's plot into `folder`; returns the line to print (what was written, or why not)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plots: not drawn: matplotlib is not installed (pip install 'edge-audio[plot]')"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        path = folder / f"calibration-{slug(r.label)}.png"
        fig = _figure(plt, r, statistics(cfg, heard, r.label), cfg, target, with_positives)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return f"plots: {', '.join(str(p) for p in written)}"


def _figure(plt, r, segments, cfg, target, with_positives):
    fit = r.fit
    hop = cfg.model.hop_seconds
    z = np.concatenate([logit(s) for s in segments])
    lo = max(-9.5, float(np.min(z)) - 0.5)
    hi = 7.0
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6.4), height_ratios=(3, 2))
    bins = np.linspace(lo, hi, 90)
    top.hist(np.clip(z, lo, hi), bins=bins, color="#7a8ca3", label=f"background windows ({len(z)})", log=True)
    if with_positives and r.positive_peaks:
        top.hist(np.clip(logit(r.positive_peaks), lo, hi), bins=bins, color="#d9822b", alpha=0.85, log=True,
                 label=f"positives: peak per clip ({len(r.positive_peaks)})")
    for b in fit.contaminated:
        top.axvline(float(logit(b.peak)), color="#b02a2a", lw=1, ls=":")
    if fit.contaminated:
        top.plot([], [], color="#b02a2a", ls=":", label="contaminated bursts (left out)")
    days = fit.days
    levels = np.linspace(lo, hi, 300)
    empirical = [len(bursts(segments, float(1 / (1 + math.exp(-x))), int(math.ceil(
        (cfg.detector.hold_seconds + cfg.detector.cooldown_seconds) / hop)))) / days for x in levels]
    bottom.step(levels, np.maximum(empirical, 1e-9), where="post", color="#7a8ca3",
                label="seen in the background")
    if not fit.problem:
        fitted = [fit.rate_per_day(1 / (1 + math.exp(-x))) for x in levels]
        bottom.plot(levels, fitted, color="#2a6fb0", label="tail fit (extrapolated)")
    bottom.axhline(target, color="#444", ls="--", lw=1, label=f"target {target:g}/day")
    bottom.axhline(1 / days, color="#aaa", ls=":", lw=1, label="once in all the background heard")
    bottom.set_yscale("log")
    bottom.set_ylim(max(1e-3, target / 100), max(10.0 / days, target * 10))
    bottom.set_ylabel("false starts per day")
    top.set_ylabel("windows")
    for ax in (top, bottom):
        if r.threshold is not None:
            ax.axvline(float(logit(r.threshold)), color="#1b7f3b", lw=2)
        ax.axvline(float(logit(cfg.detector.threshold)), color="#444", lw=1, ls="-.")
        ax.grid(alpha=0.3)
    top.plot([], [], color="#1b7f3b", lw=2, label=f"calibrated {r.threshold:.3f}" if r.threshold is not None
             else "not calibrated")
    top.plot([], [], color="#444", lw=1, ls="-.", label=f"profile default {cfg.detector.threshold:g}")
    ticks = [t for t in TICKS if lo <= float(logit(t)) <= hi]
    bottom.set_xticks([float(logit(t)) for t in ticks], [f"{t:g}" for t in ticks])
    bottom.set_xlim(lo, hi)
    bottom.set_xlabel("start score (smoothed; logit scale)")
    top.legend(fontsize=8, loc="upper right")
    bottom.legend(fontsize=8, loc="upper right")
    expected = "" if r.threshold is None else f" -> {r.expected_per_day:.2g} false starts/day expected"
    top.set_title(f"{r.label}: {r.threshold if r.threshold is not None else 'not calibrated'}{expected}\n"
                  f"{fit.windows * hop / 60:.1f} min of background, target {target:g}/day", fontsize=10)
    fig.tight_layout()
    return fig
