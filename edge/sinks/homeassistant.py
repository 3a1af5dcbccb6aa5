"""Home Assistant MQTT discovery: a binary sensor per watched label and a "Top sound" sensor, grouped under one
device, available while the daemon's status topic says "online". Home Assistant announces its own restarts on
<discovery prefix>/status; the configs are then published again."""

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
                    "payload_not_available": "offline"}
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
    return out
