"""The MQTT topic layout, shared by the publisher and the monitor.

    <prefix>/<device id>/status          retained "online" / "offline" (last will)
    <prefix>/<device id>/events          QoS 1 JSON events (edge/core/events.py)
    <prefix>/<device id>/state/<label>   retained ON / OFF per watched label (label as a slug)
    <prefix>/<device id>/top             retained display name of the current top class
    <prefix>/<device id>/scores          optional, rate-limited top-k stream
    <prefix>/<device id>/metrics         retained periodic JSON
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def slug(label: str) -> str:
    """A label as a topic level and an object id: lower case, runs of anything else as one '_'."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


@dataclass(frozen=True)
class Topics:
    prefix: str
    device_id: str  # '+' for every device (subscriptions)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def top(self) -> str:
        return f"{self.base}/top"

    @property
    def scores(self) -> str:
        return f"{self.base}/scores"

    @property
    def metrics(self) -> str:
        return f"{self.base}/metrics"

    def state(self, label: str) -> str:
        return f"{self.base}/state/{slug(label)}"

    def subscriptions(self, metrics: bool = False) -> list[str]:
        """What the monitor listens to: events, status, every state, and metrics when asked."""
        topics = [self.events, self.status, f"{self.base}/state/+"]
        return topics + [self.metrics] if metrics else topics

    @staticmethod
    def parse(topic: str) -> tuple[str, str]:
        """(device id, kind) of a topic in this layout; kind is the last level ('events', a state slug...)."""
        parts = topic.split("/")
        device_id = parts[-3] if len(parts) >= 3 and parts[-2] == "state" else parts[-2]
        return device_id, parts[-1]
