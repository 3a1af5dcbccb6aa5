"""Where detections go. The daemon talks to one Sink (base.py); MQTT (mqtt.py, with its outbox, topic layout and
Home Assistant discovery in their own files) and JSON lines (jsonl.py) are implementations. A new sink is one
file here plus one section in edge/config.py, and a line in make_sinks()."""

from __future__ import annotations

from ..config import Config, mqtt_password
from .base import FanOut, Sink


def make_sinks(cfg: Config, watched, model: str) -> Sink:
    """The sinks the configuration enables. With none enabled, events go to standard output as JSON lines.
    `watched`: {source id: [labels it watches]} (a plain list of labels: {"": labels}, a config with [audio]
    alone)."""
    sinks: list[Sink] = []
    if cfg.mqtt.enabled:
        from .mqtt import MqttSink
        from .outbox import spool_path
        sinks.append(MqttSink(cfg.mqtt, cfg.device_id, mqtt_password(cfg.mqtt, cfg.path), watched, model,
                              spool=spool_path(cfg.mqtt.spool_file), board=cfg.device.board))
    if cfg.jsonl.enabled or not sinks:
        from .jsonl import JsonLinesSink
        sinks.append(JsonLinesSink(cfg.jsonl.path if cfg.jsonl.enabled else ""))
    return sinks[0] if len(sinks) == 1 else FanOut(sinks)
