"""Random jitter for retry delays, so a fleet that lost its broker (or a device) does not retry in lockstep.

os.urandom rather than the random module: the daemon needs one number per retry, and `random` (with bisect,
_sha512 and its Mersenne Twister state) would stay resident for it."""

from __future__ import annotations

import os


def jitter(low: float, high: float) -> float:
    """A uniformly distributed factor in [low, high]."""
    return low + (high - low) * int.from_bytes(os.urandom(4), "little") / 0xFFFFFFFF
