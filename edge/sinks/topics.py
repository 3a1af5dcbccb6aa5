"""The MQTT topic layout, shared by the publisher and the monitor.

The device, whatever its sources:

    <prefix>/<device id>/status            retained "online" / "offline" (the last will)
    <prefix>/<device id>/metrics           retained periodic JSON of the whole daemon (with [[sources]]: a
                                           "sources" map of each one's part)
    <prefix>/<device id>/clips/<event id>  with mqtt.clips: a kept clip's audio file, as it is on the device
                                           (FLAC, Ogg/Opus or WAV; QoS 1, not retained), after the end event that
                                           names it in its "clip" field, whichever source heard it (clipsend.py)

A config with [audio] alone has one source, id "": its topics are the device's, as they always were:

    <prefix>/<device id>/events            QoS 1 JSON events (edge/core/events.py)
    <prefix>/<device id>/state/<label id>  retained ON / OFF per watched label (the label's slug(), below)
    <prefix>/<device id>/top               retained display name of the current top class
    <prefix>/<device id>/scores            optional, rate-limited top-k stream

Each named source S of [[sources]] has a level of its own under the device:

    <prefix>/<device id>/<S>/events            QoS 1 JSON events it heard (through the device's one ordered outbox)
    <prefix>/<device id>/<S>/state/<label id>  retained ON / OFF per label it watches
    <prefix>/<device id>/<S>/top               retained, its own top class
    <prefix>/<device id>/<S>/scores            optional, its top-k stream
    <prefix>/<device id>/<S>/metrics           retained JSON of its own part (level, windows, real-time factor,
                                               latency, missed windows, its state)
    <prefix>/<device id>/<S>/status            retained "online" while it delivers audio, "offline" when it is
                                               lost and at a clean shutdown (the last will covers the device only:
                                               read both, as Home Assistant does)

The device id and a source id are a level as they are (the config refuses '+', '#', '/' and NUL in them), and a
source id is never one of the device's own levels (status, events, state, ...; edge/sourceconfig.py), so a topic
names its device, source and kind without doubt once the prefix is known (Topics.parse).
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
    """The topics of one source of a device (source "": the device's own, the layout without sources)."""

    prefix: str
    device_id: str  # '+' for every device (subscriptions)
    source: str = ""  # '+' for every named source (subscriptions)

    @property
    def device_base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def base(self) -> str:
        return f"{self.device_base}/{self.source}" if self.source else self.device_base

    def device(self) -> Topics:
        """The device's own topics (its status, the last will, and its metrics)."""
        return Topics(self.prefix, self.device_id) if self.source else self

    def of(self, source: str) -> Topics:
        """The topics of another source of the same device."""
        return Topics(self.prefix, self.device_id, source)

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

    def clip(self, event_id: str) -> str:
        """A kept clip's audio: a device-level topic whatever the source (the event id is a level as it is)."""
        return f"{self.device_base}/clips/{event_id}"

    def subscriptions(self, metrics: bool = False) -> list[str]:
        """What the monitor listens to: events, status, every state, and metrics when asked; for the device's own
        topics (source "") those of every named source too, so both layouts are heard."""
        mine = [self.events, self.status, f"{self.base}/state/+"] + ([self.metrics] if metrics else [])
        return mine + (self.of("+").subscriptions(metrics) if not self.source else [])

    @staticmethod
    def parse(topic: str, prefix: str | None = None) -> tuple[str, str, str]:
        """(device id, source id or "", kind) of a topic in either layout; kind is the last level ('events',
        'status', 'metrics'...), 'state/<label id>' for a state, or 'clips/<event id>' for a clip. `prefix`: the
        topic prefix (without it, or for a topic outside it, the first level is taken as the prefix, as with the
        default 'edge-audio')."""
        if prefix and topic.startswith(prefix + "/"):
            rest = topic[len(prefix) + 1:].split("/")
        else:
            rest = topic.split("/")[1:]
        if len(rest) < 2:
            return (rest[0] if rest else ""), "", rest[-1] if rest else ""
        device_id, kind, levels = rest[0], rest[-1], rest[1:-1]
        if levels and levels[-1] in ("state", "clips"):  # a source is never called 'state' or 'clips'
            levels, kind = levels[:-1], f"{levels[-1]}/{kind}"
        return device_id, "/".join(levels), kind
