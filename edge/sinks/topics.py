"""The MQTT topic layout, shared by the publisher and the monitor.

    <prefix>/<device id>/status            retained "online" / "offline" (last will)
    <prefix>/<device id>/events            QoS 1 JSON events (edge/core/events.py)
    <prefix>/<device id>/state/<label id>  retained ON / OFF per watched label (the label's slug(), below)
    <prefix>/<device id>/top               retained display name of the current top class
    <prefix>/<device id>/scores            optional, rate-limited top-k stream
    <prefix>/<device id>/metrics           retained periodic JSON

The device id is a level as it is (the config refuses '+', '#', '/' and NUL in it).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass


_RUNS = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=1024)
def slug(name: str) -> str:
    """A label or a device id as a topic level and a Home Assistant id: never empty, only a-z, 0-9 and '_' (no
    wildcard, no separator), the same for the same name on every device and run, and slug(slug(x)) == slug(x).

    A name in ASCII: lower case, runs of anything else as one '_' ("Baby cry, infant cry" -> baby_cry_infant_cry),
    as it always was. Any other name, or one with nothing left: the same on its ASCII letters after Unicode
    decomposition (accents dropped: "Café" -> cafe), then 8 hex digits of the SHA-256 of the exact name in UTF-8,
    so names that lose letters (猫, 狗, Кошка, Γάτα, or Café beside Cafe) stay apart."""
    plain = _RUNS.sub("_", name.lower()).strip("_")
    if plain and name.isascii():
        return plain
    import hashlib  # here: only a name that is not ASCII needs it (it maps OpenSSL's libcrypto into the process)
    import unicodedata
    latin = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    base = _RUNS.sub("_", latin.lower()).strip("_")
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{base}_{digest}" if base else digest


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
