"""Does the broker answer? One short connection with the daemon's own settings (host, TLS, user, password), under
a client id of its own so the running daemon is never pushed off the broker, and nothing published."""

from __future__ import annotations

import os
import threading

from ..config import MqttConfig
from ..core.errors import ConfigError
from .mqtt import describe_error, new_client


def probe(cfg: MqttConfig, password: str | None, timeout_s: float = 5.0, status_topic: str | None = None,
          wait_online_s: float = 0.0) -> tuple[bool, str]:
    """(answered, what happened). With status_topic, also wait for its retained payload to be 'online'."""
    try:
        import paho.mqtt.client as paho
    except ImportError:
        return False, "paho-mqtt is not installed (the mqtt extra)"
    connected, online = threading.Event(), threading.Event()
    outcome = {"refused": ""}

    def on_connect(client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            outcome["refused"] = str(reason_code)
        elif status_topic:
            client.subscribe(status_topic, qos=1)
        connected.set()

    def on_message(client, userdata, message):
        if message.payload == b"online":
            online.set()

    try:
        client = new_client(paho, cfg, f"edge-audio-selftest-{os.getpid()}", password)
    except ConfigError as exc:
        return False, str(exc)
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(cfg.host, cfg.port, keepalive=max(5, int(timeout_s) + 5))
    except (OSError, ValueError, UnicodeError) as exc:
        return False, describe_error(exc)
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            return False, f"no answer within {timeout_s:g} s"
        if outcome["refused"]:
            return False, f"refused the connection: {outcome['refused']}"
        if status_topic:
            if not online.wait(wait_online_s):
                return False, f"{status_topic} is not 'online' after {wait_online_s:g} s"
            return True, f"answers, and {status_topic} is online"
        return True, "answers"
    finally:
        client.disconnect()
        client.loop_stop()
