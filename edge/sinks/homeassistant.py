"""Home Assistant MQTT discovery: a binary sensor per watched label, a "Top sound" sensor, a "Sound level" sensor
(read from the metrics topic) and a "Sound event" event entity (start / end, with the label and scores as
attributes), grouped under one device (its model the board profile, its software version the kit's and the model
bundle's), available while the daemon's status topic says "online". Home Assistant announces its own restarts on
<discovery prefix>/status; the configs are then published again. A label that is no longer watched has its retained
config cleared, which removes the entity.

The top class flickers between related classes (Cat, Animal, Domestic animals) about twice a second; HeldTop lets
a new one through only once it has held, so the retained topic, and Home Assistant's recorder, do not churn."""

from __future__ import annotations

import json
import time

from .. import __version__
from .topics import Topics, slug

UNKNOWN_BOARD = "edge-audio device"  # the device model when the config names no board profile (device.board)


def birth_topic(discovery_prefix: str) -> str:
    """Where Home Assistant says "online" when it (re)starts."""
    return f"{discovery_prefix}/status"


def device_block(device_id: str, model: str, board: str) -> dict:
    """The device every entity belongs to: `board` (the board profile) as its model, the kit's version and the
    model bundle's name as its software version."""
    return {"identifiers": [f"edge-audio-{device_id}"], "name": f"edge-audio {device_id}",
            "model": board or UNKNOWN_BOARD, "manufacturer": "edge-audio",
            "sw_version": f"edge-audio {__version__} / {model}" if model else f"edge-audio {__version__}"}


def discovery_messages(topics: Topics, discovery_prefix: str, watched: list[str], model: str, board: str = ""
                       ) -> list[tuple[str, str]]:
    """(config topic, JSON payload) for every entity, to publish retained with QoS 1."""
    device_id = topics.device_id
    device = device_block(device_id, model, board)
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
    # dB full scale (0 at the microphone's clipping point, negative below it): relative, not calibrated SPL
    config = {"name": "Sound level", "unique_id": f"edge_audio_{node}_sound_level", "state_topic": topics.metrics,
              "value_template": "{{ value_json.level_dbfs }}", "device_class": "sound_pressure",
              "unit_of_measurement": "dB", "state_class": "measurement", "device": device, **availability}
    out.append((f"{discovery_prefix}/sensor/{node}/sound_level/config", json.dumps(config)))
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
