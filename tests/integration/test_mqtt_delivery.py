"""Events the broker will not take, on a real Mosquitto: a spool whose head makes the broker drop the connection
(a topic with a tab, as a device id with a tab once made) and events an ACL denies are set aside after their tries,
reported once, kept in the spool's dead-letter table, and delay nothing else; the problem in the metrics goes once a
later publish works; with MQTT 3.1.1 the broker's acknowledgement of a denied message cannot tell it apart."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import threading

import pytest

from daemonparts import kitchen_config, segment
from edge.config import parse_config
from edge.core.events import Event
from edge.sinks.delivery import TRIES
from edge.sinks.outbox import Message, Outbox
from tools.rig.daemon import DaemonProcess, daemon_config_text
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have, wait_until

pytestmark = pytest.mark.skipif(not have("mosquitto", "mosquitto_passwd"),
                                reason="needs Debian's mosquitto (make test installs it)")

POISONED = "edge-audio/kit\tchen/events"  # a control character: Mosquitto drops a client that sends it


def _event(kind: str, event_id: str, device: str = "kitchen") -> Event:
    return Event(kind, event_id, "Cat", 76, 1_764_500_000.0, None if kind == "start" else 1_764_500_002.0, 0.9, 0.8,
                 0.0 if kind == "start" else 2.0, -20.0, device, "yamnet_spectra_in", "cpu")


def _poisoned_spool(path) -> list[str]:
    """A spool left by a run that published under a device id with a tab: its first event's topic has the tab, the
    three after it are fine. Returns the good ones' message ids, in order."""
    box = Outbox(100, "drop_oldest", str(path))
    box.open()
    events = [_event("start", "spooled-1"), _event("end", "spooled-1"), _event("start", "spooled-2"),
              _event("end", "spooled-2")]
    for e in events:
        box.append(Message("edge-audio/kitchen/events", e.to_json(), qos=1))
    box.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE outbox SET topic = ? WHERE seq = (SELECT min(seq) FROM outbox)", (POISONED,))
    return [e.message_id for e in events[1:]]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_message_that_makes_the_broker_drop_the_connection_is_set_aside_and_delays_nothing_else(
        tmp_path, broker, coral_twin, miaow, protocol):
    b = broker()
    spool = tmp_path / "spool.db"
    good = _poisoned_spool(spool)
    sub = Subscriber(b.port, topics=("edge-audio/kitchen/events", "edge-audio/kitchen/metrics"))
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, b.port, {"source": "stdin", "rate_hz": 16000},
                         {"spool_file": spool, "protocol": protocol}, metrics_s=1.0)
    daemon = DaemonProcess(cfg, stdin_pipe=True)

    def delivered(s) -> list[str]:
        return list(dict.fromkeys(f"{e['event_id']}:{e['type']}" for e in s.events()))
    try:
        daemon.feed(segment(miaow))  # a new Cat event, produced while the spool's head is being tried
        assert sub.wait(lambda s: len(delivered(s)) >= len(good) + 2, 60), daemon.log
        assert sub.wait(lambda s: _metrics(s).get("set_aside_events") == 1 and _metrics(s)["queue_depth"] == 0,
                        10), daemon.log
        assert daemon.stop() == 0, daemon.log
    finally:
        daemon.kill()
        sub.close()
    ids = delivered(sub)
    assert ids[:len(good)] == good and len(ids) == len(good) + 2  # the spool's good ones first, in order
    assert [i.split(":")[1] for i in ids[len(good):]] == ["start", "end"]
    [line] = [line for line in daemon.log.splitlines() if "set aside" in line]  # one line, with its key
    assert "event_id=spooled-1 type=start label='Cat' topic='edge-audio/kit\\tchen/events'" in line, line
    assert f"after {TRIES} failed tries" in line and "dropped the connection" in line
    assert len(re.findall("disconnected from", daemon.log)) == TRIES  # then never again
    m = _metrics(sub)
    assert (m["delivered_events"], m["set_aside_events"], m["refused_events"], m["dropped_events"]) == (5, 1, 0, 0)
    assert m["produced_events"] == m["delivered_events"] + m["set_aside_events"] + m["queue_depth"]
    assert m["mqtt_error"] == "" and m["delivery_confirmed"] is (protocol == "5")
    with sqlite3.connect(spool) as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        [(topic, payload, reason)] = db.execute("SELECT topic, payload, reason FROM dead_letter").fetchall()
    assert topic == POISONED and json.loads(payload)["event_id"] == "spooled-1" and "dropped the connection" in reason


def _metrics(sub: Subscriber) -> dict:
    payloads = sub.payloads("/metrics")
    return json.loads(payloads[-1]) if payloads else {}


EDGE_ACL = "\n".join(f"topic readwrite edge-audio/acl/{t}" for t in ("status", "state/#", "top", "metrics"))


def _acl(events_allowed: bool) -> str:
    """`watch` reads everything; `edge` (the device) writes its topics, its events only if `events_allowed`."""
    events = "\ntopic readwrite edge-audio/acl/events" if events_allowed else ""
    return f"user watch\ntopic readwrite #\n\nuser edge\n{EDGE_ACL}{events}\n"


def _acl_sink(port: int, protocol: str):
    from edge.sinks.mqtt import MqttSink
    cfg = parse_config(daemon_config_text(mqtt={
        "host": "127.0.0.1", "port": port, "protocol": protocol, "username": "edge", "spool_file": "none",
        "homeassistant": False, "reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1.0})).mqtt
    sink = MqttSink(cfg, "acl", password="secret")
    sink.start()
    assert wait_until(lambda: sink.connected, 10)
    return sink


def _publish(sink, event: Event) -> None:
    sink.publish_event(event)
    sink.flush()


def _accepts_events(port: int) -> bool:
    """Does the broker take a QoS 1 publish from `edge` on its events topic now (MQTT 5 says)?"""
    import paho.mqtt.client as paho
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="acl-probe", protocol=paho.MQTTv5)
    client.username_pw_set("edge", "secret")
    answer: list[bool] = []
    done = threading.Event()
    client.on_publish = lambda c, u, mid, rc, p=None: (answer.append(not rc.is_failure), done.set())
    client.on_connect = lambda c, u, f, rc, p=None: c.publish("edge-audio/acl/events", "{}", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(5)
    client.loop_stop()
    client.disconnect()
    return answer == [True]


def test_an_acl_denial_is_set_aside_after_its_tries_and_the_error_goes_once_publishing_works(tmp_path, broker, caplog):
    b = broker(users={"edge": "secret", "watch": "look"}, acl=_acl(events_allowed=False))
    sub = Subscriber(b.port, topics=("edge-audio/acl/events",), username="watch", password="look")
    sink = _acl_sink(b.port, "5")
    try:
        _publish(sink, _event("start", "denied", "acl"))
        assert wait_until(lambda: sink.health()["set_aside_events"] == 1, 15)
        h = sink.health()
        assert (h["refused_events"], h["delivered_events"], h["queue_depth"]) == (1, 0, 0)
        assert "event_id=denied" in h["mqtt_error"] and "Not authorized" in h["mqtt_error"]
        (b.folder / "acl").write_text(_acl(events_allowed=True))  # the ACL is fixed
        b.proc.send_signal(signal.SIGHUP)  # Mosquitto reads it again
        assert wait_until(lambda: _accepts_events(b.port), 10)
        _publish(sink, _event("start", "allowed", "acl"))
        assert wait_until(lambda: sink.health()["delivered_events"] == 1, 10)
        assert sink.health()["mqtt_error"] == ""  # not the old refusal any more
        assert sub.wait(lambda s: "allowed" in [e.get("event_id") for e in s.events()], 5)
    finally:
        sink.stop(2.0)
        sub.close()
    assert "denied" not in [e.get("event_id") for e in sub.events()]
    refusals = [r for r in caplog.records if "refused to accept edge-audio/acl/events" in r.getMessage()]
    set_aside = [r for r in caplog.records if "set aside event_id=denied" in r.getMessage()]
    assert len(refusals) == 1 and len(set_aside) == 1  # one line each, not one per try


def test_with_mqtt_3_1_1_a_denied_event_counts_as_delivered_and_the_metrics_say_it_cannot_tell(tmp_path, broker):
    b = broker(users={"edge": "secret", "watch": "look"}, acl=_acl(events_allowed=False))
    sub = Subscriber(b.port, topics=("edge-audio/acl/#",), username="watch", password="look")
    sink = _acl_sink(b.port, "3.1.1")
    try:
        _publish(sink, _event("start", "denied", "acl"))
        assert wait_until(lambda: sink.health()["queue_depth"] == 0, 10)
        sink.set_state("Cat", True)  # a publish the ACL allows, after it: the broker has handled the event by then
        sink.flush()
        assert sub.wait(lambda s: s.payloads("/state/cat") == [b"ON"], 10)
        h = sink.health()
    finally:
        sink.stop(2.0)
        sub.close()
    assert sub.events() == []  # the broker dropped it...
    assert (h["delivered_events"], h["refused_events"], h["set_aside_events"]) == (1, 0, 0)  # ...and acknowledged it
    assert h["delivery_confirmed"] is False
