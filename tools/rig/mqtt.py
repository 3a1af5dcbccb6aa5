"""A subscriber that records every message on its topics (MQTT v5, its own network thread), each with its arrival
time on time.monotonic(); with credentials, TLS, or a session the broker keeps while it is away."""

from __future__ import annotations

import json
import threading
import time
from typing import NamedTuple

from edge.config import MqttConfig
from edge.sinks.mqtt import new_client

from .ports import RigError, wait_until


class Message(NamedTuple):
    topic: str
    payload: bytes
    retain: bool
    at: float  # arrival, time.monotonic()


class Subscriber:
    def __init__(self, port: int, topics=("#",), username=None, password=None, tls_ca=None, session: str = ""):
        """`topics`: one filter or several. `session`: a client id whose session the broker keeps while the
        subscriber is away (messages are queued for it)."""
        import paho.mqtt.client as paho
        topics = (topics,) if isinstance(topics, str) else tuple(topics)
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        # the daemon's own client factory: the same protocol, credential and TLS handling
        cfg = MqttConfig(username=username or "", tls=bool(tls_ca), ca_file=str(tls_ca or ""), protocol="5")
        self.client = new_client(paho, cfg, session, password, reconnect=True)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        kwargs = {}
        if session:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            kwargs = {"clean_start": False, "properties": props}
            self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect("127.0.0.1", port, 30, **kwargs)
        self.client.loop_start()
        if not subscribed.wait(5):
            self.close()
            raise RigError("the subscriber's subscription was not acknowledged")

    def _on_message(self, client, userdata, msg):
        now = time.monotonic()
        with self._lock:
            self.messages.append(Message(msg.topic, msg.payload, bool(msg.retain), now))

    def received(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def payloads(self, suffix: str) -> list[bytes]:
        """Every payload so far on a topic ending in `suffix`, in arrival order."""
        return [m.payload for m in self.received() if m.topic.endswith(suffix)]

    def events(self) -> list[dict]:
        return [json.loads(p) for p in self.payloads("/events")]

    def timed_events(self) -> list[tuple[float, dict]]:
        """(arrival time, payload) of every event message so far."""
        return [(m.at, json.loads(m.payload)) for m in self.received() if m.topic.endswith("/events")]

    def retained(self) -> dict[str, bytes]:
        """topic -> payload of the messages the broker delivered as retained (what a late subscriber sees)."""
        return {m.topic: m.payload for m in self.received() if m.retain}

    def wait(self, predicate, timeout_s: float = 30.0) -> bool:
        """Until `predicate(self)` is true (True) or `timeout_s` has passed (its last answer)."""
        return wait_until(lambda: predicate(self), timeout_s, 0.05)

    def wait_for(self, suffix: str, payload: bytes, timeout_s: float = 30.0) -> bool:
        return self.wait(lambda s: payload in s.payloads(suffix), timeout_s)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
