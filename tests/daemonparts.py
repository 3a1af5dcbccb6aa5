"""What the daemon tests share: the kitchen device's config (written by the rig's config writer) and its audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tools.rig.daemon import write_daemon_config

SILENCE = np.zeros(16000 * 4, np.int16)


def segment(miaow):
    """A miaow, then four seconds of silence: one Cat event, started and ended."""
    return np.concatenate([miaow, SILENCE])


def kitchen_config(path: Path, model, port: int, audio: dict, mqtt: dict | None = None,
                   detector: dict | None = None, metrics_s: float = 30.0, device: dict | None = None) -> Path:
    """The daemon on device "kitchen" watching Cat and Dog, publishing to 127.0.0.1:`port` and retrying fast;
    `audio`, `mqtt`, `detector` and `device` add to (or override) those tables."""
    return write_daemon_config(
        path, device={"id": "kitchen", **(device or {})},
        audio={"stall_seconds": 5, **audio},
        model={"path": model},
        detector={"allow": ["Cat", "Dog"], "threshold": 0.5, "hold_seconds": 1.0, **(detector or {})},
        mqtt={"host": "127.0.0.1", "port": port, "reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1.0,
              **(mqtt or {})},
        metrics={"interval_seconds": metrics_s})
