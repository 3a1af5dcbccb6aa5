"""Clip-level accuracy on a labelled folder of recordings: a clip's score is the mean (or max) of its window
scores; a hit is a labelled class among the clip's top-k. Labels CSV: file, then `audioset_indices` (';'-separated)
and optionally `lenient_indices` (the strict classes plus their parents)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.model.classifier import Classifier
from edge.model.recordings import classify_file
from edge.core.clip import DEFAULT_POOL, pool_scores
from edge.core.console import Progress


@dataclass
class LabelledClip:
    file: str
    strict: set[int]
    lenient: set[int]


def read_labels_csv(path: Path) -> list[LabelledClip]:
    def parse(cell: str) -> set[int]:
        return {int(v) for v in (cell or "").split(";") if v.strip()}

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "file" not in rows[0] or "audioset_indices" not in rows[0]:
        raise ValueError(f"{path}: expected columns file,audioset_indices[,lenient_indices]")
    return [LabelledClip(r["file"], parse(r["audioset_indices"]), parse(r.get("lenient_indices")) or
                         parse(r["audioset_indices"])) for r in rows]


def clip_scores(classifier: Classifier, files: list[Path], hop_seconds: float, progress: bool = False,
                pool: str = DEFAULT_POOL) -> np.ndarray:
    """[clips, classes]: window scores pooled per file (mean or max)."""
    out = np.zeros((len(files), len(classifier.labels)), np.float32)
    with Progress(len(files)) as shown:
        for i, f in enumerate(files):
            windows = [w.scores.copy() for w in classify_file(f, classifier, hop_seconds)]
            if windows:
                out[i] = pool_scores(np.stack(windows), pool)
            if progress:
                shown.show(i + 1, f"  {i + 1}/{len(files)} clips")
    return out


def hit_rates(scores: np.ndarray, clips: list[LabelledClip], ks=(1, 5)) -> dict:
    order = np.argsort(-scores, axis=1, kind="stable")
    result = {"clips": len(clips)}
    for k in ks:
        top = order[:, :k]
        result[f"strict_top{k}"] = float(np.mean([bool(c.strict & set(t)) for c, t in zip(clips, top.tolist())]))
        result[f"lenient_top{k}"] = float(np.mean([bool(c.lenient & set(t)) for c, t in zip(clips, top.tolist())]))
    return result
