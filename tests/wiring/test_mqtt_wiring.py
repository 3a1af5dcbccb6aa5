"""MqttSink wiring with a stand-in client passed through the constructor (the real broker is in
test_daemon_mqtt.py): the outbox bound and policy, and callbacks that raise."""

import json

from edge.config import parse_config
from edge.core.events import Event
from edge.sinks.mqtt import MqttSink
from edge.sinks.topics import slug


class StandInClient:
    def __init__(self):
        self.published = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, payload, qos, retain))


def _event(i: int) -> Event:
    return Event("start", f"id{i}", "Dog", 74, 1000.0 + i, None, 0.9, 0.8, 0.0, -20.0, "pi", "m", "cpu")


def _sink(policy: str, bound: int = 2) -> MqttSink:
    cfg = parse_config(f"[mqtt]\noutbox_max = {bound}\noutbox_policy = '{policy}'\n").mqtt
    return MqttSink(cfg, "pi", watched=["Dog"], client_factory=lambda password: StandInClient())


def _queued(sink):
    return [json.loads(m.payload)["event_id"] for m in sink.outbox]


def test_full_outbox_drops_the_oldest_and_counts_it():
    sink = _sink("drop_oldest")
    for i in range(5):
        sink.publish_event(_event(i))
    assert _queued(sink) == ["id3", "id4"] and sink.dropped_events == 3 and sink.queue_depth == 2


def test_full_outbox_can_keep_the_oldest_instead():
    sink = _sink("drop_newest")
    for i in range(5):
        sink.publish_event(_event(i))
    assert _queued(sink) == ["id0", "id1"] and sink.dropped_events == 3


def test_a_callback_that_raises_is_logged_not_propagated(caplog):
    sink = _sink("drop_oldest")

    def broken(*args):
        raise KeyError("boom")
    guarded = sink._guard(broken)
    guarded(None, None)  # paho would lose its network thread if this raised
    assert "error in MQTT callback broken" in caplog.text


def test_state_topics_use_slugs():
    assert slug("Baby cry, infant cry") == "baby_cry_infant_cry"
    sink = _sink("drop_oldest")
    sink.set_state("Baby cry, infant cry", True)
    assert sink._retained == {"edge-audio/pi/state/baby_cry_infant_cry": "ON"}
