"""What the daemon tests share: the kitchen device's config (written by the rig's config writer), its audio, and
sinks that keep what the daemon hands them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.sinks.base import Sink
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


class RecordingSink(Sink):
    """A sink for tests: keeps everything the daemon hands it."""

    def __init__(self):
        self.calls = []

    def publish_event(self, event):
        self.calls.append(("event", event.type, event.label))

    def set_state(self, label, on, source=""):
        self.calls.append(("state", label, on) if not source else ("state", source, label, on))

    def set_top(self, label, source=""):
        self.calls.append(("top", label) if not source else ("top", source, label))

    def publish_metrics(self, payload, source=""):
        self.calls.append(("metrics", payload["windows"]) if not source else ("metrics", source, payload["windows"]))

    def health(self):
        return {"queue_depth": 7}


class LeftOpen(RecordingSink):
    """A sink whose spool holds `open_events`, left by a run last alive at `last_alive` (it died during them); keeps
    the Events it is handed in `events` too."""

    def __init__(self, open_events: list, last_alive: float):
        super().__init__()
        self.open_events, self.last_alive = open_events, last_alive
        self.events = []

    def recovered_open_events(self):
        return self.open_events, self.last_alive

    def publish_event(self, event):
        self.events.append(event)
        super().publish_event(event)
