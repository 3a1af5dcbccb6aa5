"""A recording's window scores pooled into one clip score per class.

"mean" averages the windows; "max" keeps each class's most confident window. Measured on the labelled devset
(docs/classify.md): for YAMNet's AudioSet scores mean gives more top-1 hits and max a few more top-5
hits, so mean is the default; a bundle trained for its own sounds records which one did better on its held-out
recordings ("clip_pool" in its manifest), and that is its default.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

CLIP_POOLS = ("mean", "max")
DEFAULT_POOL = "mean"


def pool_scores(window_scores, pool: str = DEFAULT_POOL) -> np.ndarray:
    """[windows, classes] -> [classes]: one clip score per class."""
    if pool not in CLIP_POOLS:
        raise InputError(f"pool must be one of {', '.join(CLIP_POOLS)}, not {pool!r}")
    return np.max(window_scores, axis=0) if pool == "max" else np.mean(window_scores, axis=0)
