"""MqttSink wiring with a stand-in client passed through the constructor (the real broker is in
test_daemon_mqtt.py and test_mqtt_delivery.py): the outbox bound and policy, callbacks that raise, the counters, an
event set aside after its tries, retained topics paced and sent again, the top-class hold, and the back-off."""

import json

from paho.mqtt.client import MQTT_ERR_QUEUE_SIZE

from edge.config import parse_config
from edge.core.events import Event
from edge.sinks.mqtt import MqttSink
from edge.sinks.topics import slug
from tools.rig.daemon import daemon_config_text


class Info:
    def __init__(self, mid: int, rc: int = 0):
        self.mid, self.rc = mid, rc


class StandInClient:
    """Records what is published; `full`: the next this many QoS 1 publishes find the library's queue full."""

    def __init__(self):
        self.published = []
        self.dropped_copies = 0  # times the sink had the library forget what it would send again by itself
        self.full = 0

    def publish(self, topic, payload, qos=0, retain=False):
        if qos and self.full:
            self.full -= 1
            return Info(0, MQTT_ERR_QUEUE_SIZE)
        self.published.append((topic, payload, qos, retain))
        return Info(len(self.published))

    def subscribe(self, topic, qos=0):
        pass

    def drop_out_messages(self):
        self.dropped_copies += 1
        return []


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
    states = {t: v for t, v in sink.retained.current().items() if "/state/" in t}
    assert states == {"edge-audio/pi/state/dog": "OFF", "edge-audio/pi/state/baby_cry_infant_cry": "ON"}


def _ack(sink, reason=None):
    """The broker's PUBACK for the event in flight."""
    mid = sink.delivery.inflight[0]
    sink._on_publish(sink.client, None, mid, reason)


class Ok:
    is_failure = False

    def __str__(self):
        return "Success"


def _events_sent(sink) -> int:
    return len([p for p in sink.client.published if p[0].endswith("/events")])


def test_counters_add_up_and_a_refused_event_is_set_aside_after_its_tries(monkeypatch, caplog):
    monkeypatch.setattr("edge.sinks.delivery.REFUSED_PAUSE_S", 0.0)  # sent again at the next pass
    sink = _sink("drop_oldest", bound=3)
    sink._connected = True
    for i in range(6):  # three of them are dropped: the outbox holds 3
        sink.publish_event(_event(i))
        sink._pump()
    assert _events_sent(sink) == 1  # one in flight at a time
    sink._on_disconnect(sink.client, None, None, "Keep alive timeout")  # says nothing about the message
    sink._on_connect(sink.client, None, None, Ok())
    sink._pump()
    # the library forgot its own copy, and the sink sent the head again itself: exactly one copy on the new connection
    assert sink.client.dropped_copies == 1 and _events_sent(sink) == 2 and sink.delivery.tries == 0
    _ack(sink)
    for _ in range(3):  # an ACL denial: sent again twice, then set aside
        sink._pump()
        _ack(sink, Refused())
    sink._pump()
    assert _events_sent(sink) == 2 + 3 + 1  # the refused one three times, then the next one
    h = sink.health()
    assert (h["produced_events"], h["delivered_events"], h["refused_events"], h["set_aside_events"]) == (6, 1, 1, 1)
    assert h["produced_events"] == h["delivered_events"] + h["set_aside_events"] + h["dropped_events"] + \
        h["queue_depth"]
    assert h["mqtt_error"].startswith("set aside event_id=id4 type=start")
    assert len([r for r in caplog.records if "set aside" in r.getMessage()]) == 1
    _ack(sink)  # the next one goes through: the problem is no longer current
    assert sink.health()["mqtt_error"] == "" and sink.health()["delivered_events"] == 2


def test_an_event_in_flight_when_the_broker_drops_the_connection_three_times_is_set_aside(caplog):
    sink = _sink("drop_oldest", bound=10)
    for i in range(2):
        sink.publish_event(_event(i))
    for attempt in range(3):
        sink._on_connect(sink.client, None, None, Ok())
        sink._pump()
        assert sink.delivery.inflight[1] is sink.outbox.head()
        sink._on_disconnect(sink.client, None, None, "Malformed packet")
    assert [json.loads(m.payload)["event_id"] for m in sink.outbox] == ["id1"]
    sink._on_connect(sink.client, None, None, Ok())
    sink._pump()
    _ack(sink)
    h = sink.health()
    assert (h["delivered_events"], h["set_aside_events"], h["refused_events"], h["queue_depth"]) == (1, 1, 0, 0)
    [line] = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert "event_id=id0 type=start label='Dog'" in line and "after 3 failed tries" in line
    assert "dropped the connection each time it was in flight (Malformed packet)" in line


def test_retained_topics_are_paced_and_a_full_queue_is_tried_again():
    """Hundreds of retained topics never overflow the library's queue: at most a window's worth unacknowledged,
    the rest as acknowledgements come back; a publish the queue cannot take now is sent at a later pass."""
    labels = [f"Label {i}" for i in range(200)]
    cfg = parse_config(daemon_config_text(mqtt={"outbox_max": 10})).mqtt
    sink = MqttSink(cfg, "pi", watched=labels, client_factory=lambda password: StandInClient())
    sink._on_connect(sink.client, None, None, Ok())
    for i in range(0, 200, 3):
        sink.set_state(labels[i], True)
    sink.client.full = 5
    for _ in range(1000):
        if sink.retained.settled():
            break
        before = len(sink.client.published)
        sink._pump()
        assert len(sink.client.published) - before <= sink.retained.window  # unacknowledged at once
        for mid in range(before + 1, len(sink.client.published) + 1):
            sink._on_publish(sink.client, None, mid, Ok())
    assert sink.retained.settled()
    last = {}
    for topic, payload, qos, retain in sink.client.published:
        assert qos == 1 and retain
        last[topic] = payload
    assert last == sink.retained.current() and sum(v == "ON" for v in last.values()) == len(range(0, 200, 3))
    assert sum(t.endswith("/status") for t, *_ in sink.client.published) == 1
    assert sink.health()["dropped_messages"] == 0


def test_the_back_off_resets_once_a_connection_held_and_grows_while_connections_fail():
    from edge.sinks.connection import STABLE_S, Backoff
    clock = Clock()
    backoff = Backoff(1.0, 10.0, clock)
    nominal = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    delays = [backoff.next_delay() for _ in nominal]
    assert all(0.5 * n <= d <= n for d, n in zip(delays, nominal)), delays
    backoff.answered()  # the broker answered, the connection held, then dropped: quick again
    clock.now += STABLE_S + 1
    assert 0.5 <= backoff.next_delay() <= 1.0 and 1.0 <= backoff.next_delay() <= 2.0
    backoff.answered()  # answered, then dropped at once (a client with the same id, a packet it cannot parse)
    assert 2.0 <= backoff.next_delay() <= 4.0


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
    (flush), the network thread sends what was queued and the broker acknowledges it, `step_s` go by."""
    if label is not None:
        sink.set_top(label)
    sink.flush()
    before = len(sink.client.published)
    sink._pump()
    for mid in range(before + 1, len(sink.client.published) + 1):
        sink._on_publish(sink.client, None, mid, Ok())
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
    assert sink.retained.value(sink.topics.top) == "Cat"  # what a reconnect sends again


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
    assert sink.retained.value(sink.topics.top) == "Speech"


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
