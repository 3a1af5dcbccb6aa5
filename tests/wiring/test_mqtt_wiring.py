"""MqttSink wiring with a stand-in client passed through the constructor (the real broker is in
test_daemon_mqtt.py): the outbox bound and policy, and callbacks that raise."""

import json

from edge.config import parse_config
from edge.core.events import Event
from edge.sinks.mqtt import MqttSink
from edge.sinks.topics import slug
from tools.rig.daemon import daemon_config_text


class Info:
    def __init__(self, mid: int):
        self.mid, self.rc = mid, 0


class StandInClient:
    def __init__(self):
        self.published = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, payload, qos, retain))
        return Info(len(self.published))

    def subscribe(self, topic, qos=0):
        pass


class Refused:
    is_failure = True

    def __str__(self):
        return "Not authorized"


def _event(i: int) -> Event:
    return Event("start", f"id{i}", "Dog", 74, 1000.0 + i, None, 0.9, 0.8, 0.0, -20.0, "pi", "m", "cpu")


def _sink(policy: str, bound: int = 2) -> MqttSink:
    cfg = parse_config(daemon_config_text(mqtt={"outbox_max": bound, "outbox_policy": policy})).mqtt
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
    # every watched label starts OFF (so Home Assistant never shows "Unknown" or a stale ON), then follows events
    assert sink._retained == {"edge-audio/pi/state/dog": "OFF", "edge-audio/pi/state/baby_cry_infant_cry": "ON"}


def _ack(sink, reason=None):
    """The broker's PUBACK for what is in flight."""
    mid = sink._inflight[0]
    sink._on_publish(sink.client, None, mid, reason)


def test_counters_add_up_and_the_event_in_flight_is_not_sent_twice():
    sink = _sink("drop_oldest", bound=3)
    sink._connected = True
    for i in range(6):  # three of them are dropped: the outbox holds 3
        sink.publish_event(_event(i))
        sink._pump()
    events = [p for p in sink.client.published if p[0].endswith("/events")]
    assert len(events) == 1  # one in flight at a time
    sink._set_disconnected()  # an outage: the client library keeps the message and sends it again itself
    sink._on_connect(sink.client, None, None, type("Ok", (), {"is_failure": False})())
    sink._pump()
    assert len([p for p in sink.client.published if p[0].endswith("/events")]) == 1  # no copy of our own
    _ack(sink)
    sink._pump()
    _ack(sink, Refused())  # an ACL denial: counted, not sent again
    h = sink.health()
    assert (h["produced_events"], h["delivered_events"], h["refused_events"]) == (6, 1, 1)
    assert h["produced_events"] == h["delivered_events"] + h["refused_events"] + h["dropped_events"] + \
        h["queue_depth"]


class Clock:
    """Monotonic seconds that the test moves on."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _top_sink(hold_s: float) -> tuple[MqttSink, Clock]:
    cfg = parse_config(daemon_config_text(mqtt={"top_hold_seconds": hold_s})).mqtt
    clock = Clock()
    sink = MqttSink(cfg, "pi", client_factory=lambda password: StandInClient(), clock=clock)
    sink._connected = True
    return sink, clock


def _loop_pass(sink: MqttSink, clock: Clock, label: str | None = None, step_s: float = 0.5) -> None:
    """One pass of the audio loop: the top class changed to `label` (None: it did not), the loop goes to sleep
    (flush), the network thread sends what was queued, `step_s` go by."""
    if label is not None:
        sink.set_top(label)
    sink.flush()
    sink._pump()
    clock.now += step_s


def _shown(sink: MqttSink) -> list[str]:
    """What was published on the retained top topic, in order."""
    return [p[1] for p in sink.client.published if p[0] == sink.topics.top]


FLICKER = ["Animal", "Cat", "Domestic animals, pets", "Animal", "Cat"]


def test_a_top_class_flickering_faster_than_the_hold_publishes_nothing_new():
    sink, clock = _top_sink(3.0)
    _loop_pass(sink, clock, "Cat")  # the first top class of a run goes out at once
    for label in FLICKER * 4:  # a change every 0.5 s for 10 s, one pass each
        _loop_pass(sink, clock, label)
    for _ in range(10):  # Cat is back, and stays: there is nothing new to publish
        _loop_pass(sink, clock)
    assert _shown(sink) == ["Cat"]
    assert sink._retained[sink.topics.top] == "Cat"  # what a reconnect sends again


def test_a_top_class_held_past_the_hold_is_published_once_when_it_has_held():
    sink, clock = _top_sink(3.0)
    _loop_pass(sink, clock, "Cat")
    since = clock.now
    sink.set_top("Speech")
    while _shown(sink) == ["Cat"]:
        published_at = clock.now
        _loop_pass(sink, clock)
    assert published_at - since == sink.cfg.top_hold_seconds  # at the first pass once it has held
    for _ in range(20):
        _loop_pass(sink, clock)
    assert _shown(sink) == ["Cat", "Speech"]
    assert sink._retained[sink.topics.top] == "Speech"


def test_a_change_restarts_the_hold():
    sink, clock = _top_sink(3.0)
    _loop_pass(sink, clock, "Cat")
    _loop_pass(sink, clock, "Speech", step_s=2.0)
    _loop_pass(sink, clock, "Music", step_s=2.0)  # Speech was the top for 2 s: Music starts a hold of its own
    _loop_pass(sink, clock, step_s=1.0)  # Speech would have held 4 s by now, Music 2 s
    assert _shown(sink) == ["Cat"]
    _loop_pass(sink, clock)  # Music has held 3 s
    assert _shown(sink) == ["Cat", "Music"]


def test_no_hold_publishes_every_change_at_once():
    sink, clock = _top_sink(0.0)
    _loop_pass(sink, clock, "Cat")
    for label in FLICKER:
        _loop_pass(sink, clock, label)
    assert _shown(sink) == ["Cat", *FLICKER]
