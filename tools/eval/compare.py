"""Window-level agreement between two models' scores on the same windows."""

from __future__ import annotations

import numpy as np


def compare_scores(reference: np.ndarray, candidate: np.ndarray, k: int = 5) -> dict:
    """[windows, classes] each. top1_agreement: same top class; ref_top1_in_top5: the reference's top class is
    among the candidate's top-k; top5_overlap: mean |top-k ∩ top-k| / k; mean/max absolute score difference."""
    if reference.shape != candidate.shape:
        raise ValueError(f"score shapes differ: {reference.shape} vs {candidate.shape}")
    n = len(reference)
    if n == 0:
        return {"windows": 0}
    ref_top = np.argsort(-reference, axis=1, kind="stable")[:, :k]
    cand_top = np.argsort(-candidate, axis=1, kind="stable")[:, :k]
    diff = np.abs(reference.astype(np.float64) - candidate)
    return {
        "windows": int(n),
        "top1_agreement": float(np.mean(ref_top[:, 0] == cand_top[:, 0])),
        "ref_top1_in_top5": float(np.mean([r in c for r, c in zip(ref_top[:, 0], cand_top)])),
        "top5_overlap": float(np.mean([len(set(r) & set(c)) / k for r, c in zip(ref_top, cand_top)])),
        "mean_abs_diff": float(diff.mean()),
        "max_abs_diff": float(diff.max()),
    }
