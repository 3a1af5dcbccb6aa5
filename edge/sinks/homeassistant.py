"""Home Assistant MQTT discovery: a binary sensor per watched label, a "Top sound" sensor, a "Sound level" sensor
(read from the metrics topic) and a "Sound event" event entity (start / end, with the label and scores as
attributes), grouped under one device (its model the board profile, its software version the kit's and the model
bundle's), available while the daemon's status topic says "online". Home Assistant announces its own restarts on
<discovery prefix>/status; the configs are then published again. A label that is no longer watched has its retained
config cleared, which removes the entity.

With [[sources]], each source is a device of its own: a microphone or camera S of daemon D is the device
"edge-audio D S" (identifier edge-audio-D/S), with its entities under short names ("Dog", "Top sound", "Sound
level", "Sound event") on its own topics, linked by via_device to the daemon's device, which keeps one entity (the
"Delegate" in use, from the device metrics). Why a device per source: Home Assistant puts devices, not entities,
in areas; one device holding every source's entities under prefixed names would put a kitchen microphone and a
porch camera in one room. A source's entities are available while both the daemon's status and the source's own
status say "online" (availability_mode "all": the daemon's last will covers every source, the source's status says
whether it delivers audio). A config with [audio] alone (source "") announces exactly what it always did.

Ids: the device's node id and each label's object id are topics.slug() of the exact name (a name that is not ASCII
gets a hash of itself, so 猫 and 狗, or devices 厨房 and 客厅, never share one); a source's node is
"<slug(D)>__<slug(S)>" (slug never yields "__", so no device node or other source node is it), and its identifier
holds a '/' that neither id can hold. The names Home Assistant shows are kept as they are. Clearing stale configs
touches only configs in a node of this daemon's (its own, each source's) that name that exact device.

The top class flickers between related classes (Cat, Animal, Domestic animals) about twice a second; HeldTop lets
a new one through only once it has held, so the retained topic, and Home Assistant's recorder, do not churn."""

from __future__ import annotations

import json
import logging
import time

from .. import __version__
from .topics import Topics, slug

log = logging.getLogger("edge.homeassistant")

UNKNOWN_BOARD = "edge-audio device"  # the device model when the config names no board profile (device.board)


def birth_topic(discovery_prefix: str) -> str:
    """Where Home Assistant says "online" when it (re)starts."""
    return f"{discovery_prefix}/status"


def identifier(device_id: str, source: str = "") -> str:
    """The Home Assistant device identifier: the exact device id (and source id), so it tells devices apart
    whatever their node."""
    return f"edge-audio-{device_id}/{source}" if source else f"edge-audio-{device_id}"


def node(topics: Topics) -> str:
    """The node id of a source's configs (source "": the device's)."""
    return f"{slug(topics.device_id)}__{slug(topics.source)}" if topics.source else slug(topics.device_id)


def device_block(device_id: str, model: str, board: str, source: str = "") -> dict:
    """The device every entity belongs to: `board` (the board profile) as its model, the kit's version and the
    model bundle's name as its software version; a named source's device is reached through the daemon's."""
    block = {"identifiers": [identifier(device_id, source)],
             "name": f"edge-audio {device_id} {source}" if source else f"edge-audio {device_id}",
             "model": board or UNKNOWN_BOARD, "manufacturer": "edge-audio",
             "sw_version": f"edge-audio {__version__} / {model}" if model else f"edge-audio {__version__}"}
    if source:
        block["via_device"] = identifier(device_id)
    return block


def _availability(topics: Topics) -> dict:
    """The daemon's status; for a named source, that and the source's own, both "online"."""
    origin = {"name": "edge-audio", "sw_version": __version__}
    if not topics.source:
        return {"availability_topic": topics.status, "payload_available": "online",
                "payload_not_available": "offline", "qos": 1, "origin": origin}
    return {"availability": [{"topic": t, "payload_available": "online", "payload_not_available": "offline"}
                             for t in (topics.device().status, topics.status)],
            "availability_mode": "all", "qos": 1, "origin": origin}


def discovery_messages(topics: Topics, discovery_prefix: str, watched: list[str], model: str, board: str = ""
                       ) -> list[tuple[str, str]]:
    """(config topic, JSON payload) for every entity of one source (source "": the device's, as without
    sources), to publish retained with QoS 1."""
    device = device_block(topics.device_id, model, board, topics.source)
    availability = _availability(topics)
    node_id = node(topics)
    _warn_merged(watched)
    out = []
    for label in watched:
        s = slug(label)
        config = {"name": label, "unique_id": f"edge_audio_{node_id}_{s}", "state_topic": topics.state(label),
                  "payload_on": "ON", "payload_off": "OFF", "device_class": "sound", "device": device,
                  **availability}
        out.append((f"{discovery_prefix}/binary_sensor/{node_id}/{s}/config", json.dumps(config)))
    config = {"name": "Top sound", "unique_id": f"edge_audio_{node_id}_top", "state_topic": topics.top,
              "icon": "mdi:ear-hearing", "device": device, **availability}
    out.append((f"{discovery_prefix}/sensor/{node_id}/top/config", json.dumps(config)))
    # dB full scale (0 at the microphone's clipping point, negative below it): relative, not calibrated SPL
    config = {"name": "Sound level", "unique_id": f"edge_audio_{node_id}_sound_level",
              "state_topic": topics.metrics, "value_template": "{{ value_json.level_dbfs }}",
              "device_class": "sound_pressure", "unit_of_measurement": "dB", "state_class": "measurement",
              "device": device, **availability}
    out.append((f"{discovery_prefix}/sensor/{node_id}/sound_level/config", json.dumps(config)))
    config = {"name": "Sound event", "unique_id": f"edge_audio_{node_id}_event", "state_topic": topics.events,
              "event_types": ["start", "end"], "device": device,
              "value_template": '{{ {"event_type": value_json.type, "label": value_json.label, '
                                '"peak_score": value_json.peak_score, "event_id": value_json.event_id} | tojson }}',
              **availability}
    out.append((f"{discovery_prefix}/event/{node_id}/sound/config", json.dumps(config)))
    return out


def delegate_message(topics: Topics, discovery_prefix: str, model: str, board: str = "") -> tuple[str, str]:
    """The daemon's own device's one entity when its sources are named (so that their via_device names a device
    Home Assistant has): the delegate the model runs on, from the device metrics."""
    device_topics = topics.device()
    node_id = node(device_topics)
    config = {"name": "Delegate", "unique_id": f"edge_audio_{node_id}_delegate",
              "state_topic": device_topics.metrics, "value_template": "{{ value_json.delegate }}",
              "icon": "mdi:chip", "entity_category": "diagnostic",
              "device": device_block(device_topics.device_id, model, board), **_availability(device_topics)}
    return f"{discovery_prefix}/sensor/{node_id}/delegate/config", json.dumps(config)


def announcements(topics: Topics, discovery_prefix: str, watched: dict[str, list[str]], model: str,
                  board: str = "") -> list[tuple[str, str]]:
    """Every source's discovery messages (`watched`: source id -> its labels); with named sources, the daemon's
    device's Delegate sensor first. {"": labels} gives exactly discovery_messages() of the device."""
    out = [delegate_message(topics, discovery_prefix, model, board)] if any(watched) else []
    for source, labels in watched.items():
        out += discovery_messages(topics.of(source), discovery_prefix, labels, model, board)
    return out


def own_configs(topics: Topics, discovery_prefix: str) -> str:
    """The subscription that shows which binary sensors this source (source "": the device) announced before
    (retained configs): its own node only ('+' is one level, the node id never empty nor a wildcard)."""
    return f"{discovery_prefix}/binary_sensor/{node(topics)}/+/config"


def stale_config(topic: str, payload: bytes, topics: Topics, watched: list[str]) -> str | None:
    """The label id of a retained binary sensor config of this source (source "": the device) whose label is no
    longer watched. A config that names another device (two device ids differing only in case or punctuation
    share a node) is never it."""
    parts = topic.split("/")
    node_id = node(topics)
    if len(parts) < 5 or parts[-1] != "config" or parts[-4] != "binary_sensor" or parts[-3] != node_id or \
            not payload:
        return None
    owner = _owner(payload)
    mine = identifier(topics.device_id, topics.source)
    if owner != mine:
        _warn_shared(node_id, owner, mine)
        return None
    label = parts[-2]
    return None if label in {slug(w) for w in watched} else label


def leftover(topic: str, payload: bytes, topics: Topics, announced) -> bool:
    """A retained config in the daemon's own node that names the daemon's own device and is not `announced`: an
    entity of the config with [audio] alone it had before it gained [[sources]] (its sources are devices now)."""
    parts = topic.split("/")
    device = topics.device()
    if len(parts) < 5 or parts[-1] != "config" or parts[-3] != node(device) or not payload or topic in announced:
        return False
    return _owner(payload) == identifier(device.device_id)


def _owner(payload: bytes) -> str | None:
    """The device identifier a discovery config names, if it names exactly one."""
    try:
        config = json.loads(payload)
        identifiers = config["device"]["identifiers"]
    except (ValueError, TypeError, KeyError):
        return None
    ok = isinstance(identifiers, list) and len(identifiers) == 1 and isinstance(identifiers[0], str)
    return identifiers[0] if ok else None


_warned: set[tuple[str, str | None]] = set()


def _warn_merged(watched: list[str]) -> None:
    """ASCII labels that differ only in case or punctuation share an id, and so one entity: say so once."""
    ids: dict[str, str] = {}
    for label in watched:
        other = ids.setdefault(slug(label), label)
        if other != label and ("label", slug(label)) not in _warned:
            _warned.add(("label", slug(label)))
            log.warning("Home Assistant: labels %r and %r share the id %r and so one entity", other, label,
                        slug(label))


def _warn_shared(node_id: str, owner: str | None, mine: str) -> None:
    if (node_id, owner) not in _warned:
        _warned.add((node_id, owner))
        log.warning("Home Assistant: node %r of device %r also holds a config of %s; it is left alone, but the two "
                    "devices overwrite each other's entities: give one of them another device.id", node_id,
                    mine.removeprefix("edge-audio-"), repr(owner.removeprefix("edge-audio-")) if owner else
                    "something else")


class HeldTop:
    """The top class as the retained topic shows it: the first one at once, a later one only once it has been the
    top for `hold_s` seconds without a break (0: every change at once). offer() on every change; due() when the
    audio loop goes to sleep. `clock`: monotonic seconds."""

    def __init__(self, hold_s: float, clock=time.monotonic):
        self.hold_s = hold_s
        self.clock = clock
        self.shown: str | None = None  # what the topic says
        self.pending: str | None = None  # waiting to have held long enough
        self._since = 0.0

    def offer(self, label: str) -> str | None:
        """The new top class; returns it when it is to be published now."""
        if self.shown is None or self.hold_s <= 0:
            self.shown, self.pending = label, None
            return label
        if label == self.shown:  # back before the other one held: nothing to publish
            self.pending = None
        elif label != self.pending:
            self.pending, self._since = label, self.clock()
        return None

    def due(self) -> str | None:
        """The pending top class once it has held for hold_s (it is then the one shown), else None."""
        if self.pending is None or self.clock() - self._since < self.hold_s:
            return None
        self.shown, self.pending = self.pending, None
        return self.shown
