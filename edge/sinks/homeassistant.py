"""Home Assistant MQTT discovery: a binary sensor per watched label, a "Top sound" sensor and a "Sound event" event
entity (start / end, with the label and scores as attributes), grouped under one device, available while the
daemon's status topic says "online". Home Assistant announces its own restarts on <discovery prefix>/status; the
configs are then published again. A label that is no longer watched has its retained config cleared, which
removes the entity."""

from __future__ import annotations

import json

from .. import __version__
from .topics import Topics, slug


def birth_topic(discovery_prefix: str) -> str:
    """Where Home Assistant says "online" when it (re)starts."""
    return f"{discovery_prefix}/status"


def discovery_messages(topics: Topics, discovery_prefix: str, watched: list[str], model: str
                       ) -> list[tuple[str, str]]:
    """(config topic, JSON payload) for every entity, to publish retained with QoS 1."""
    device_id = topics.device_id
    device = {"identifiers": [f"edge-audio-{device_id}"], "name": f"edge-audio {device_id}",
              "model": model or "YAMNet", "manufacturer": "edge-audio", "sw_version": __version__}
    availability = {"availability_topic": topics.status, "payload_available": "online",
                    "payload_not_available": "offline", "qos": 1,
                    "origin": {"name": "edge-audio", "sw_version": __version__}}
    node = slug(device_id)
    out = []
    for label in watched:
        s = slug(label)
        config = {"name": label, "unique_id": f"edge_audio_{node}_{s}", "state_topic": topics.state(label),
                  "payload_on": "ON", "payload_off": "OFF", "device_class": "sound", "device": device,
                  **availability}
        out.append((f"{discovery_prefix}/binary_sensor/{node}/{s}/config", json.dumps(config)))
    config = {"name": "Top sound", "unique_id": f"edge_audio_{node}_top", "state_topic": topics.top,
              "icon": "mdi:ear-hearing", "device": device, **availability}
    out.append((f"{discovery_prefix}/sensor/{node}/top/config", json.dumps(config)))
    config = {"name": "Sound event", "unique_id": f"edge_audio_{node}_event", "state_topic": topics.events,
              "event_types": ["start", "end"], "device": device,
              "value_template": '{{ {"event_type": value_json.type, "label": value_json.label, '
                                '"peak_score": value_json.peak_score, "event_id": value_json.event_id} | tojson }}',
              **availability}
    out.append((f"{discovery_prefix}/event/{node}/sound/config", json.dumps(config)))
    return out


def own_configs(topics: Topics, discovery_prefix: str) -> str:
    """The subscription that shows which binary sensors this device announced before (retained configs)."""
    return f"{discovery_prefix}/binary_sensor/{slug(topics.device_id)}/+/config"


def stale_config(topic: str, payload: bytes, topics: Topics, watched: list[str]) -> str | None:
    """The label slug of a retained binary sensor config of this device whose label is no longer watched."""
    prefix_end = topic.split("/")
    if len(prefix_end) < 4 or prefix_end[-1] != "config" or prefix_end[-3] != slug(topics.device_id) or not payload:
        return None
    label = prefix_end[-2]
    return None if label in {slug(w) for w in watched} else label
