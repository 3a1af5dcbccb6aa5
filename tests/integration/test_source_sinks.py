"""The MQTT sink of a daemon with two named sources ("kitchen", "porch") on a real Mosquitto: each source's events,
states, top class, metrics and status on its own topics (retained ones held, and sent again after the broker lost
them), a Home Assistant device per source through the daemon's device, and a label one source no longer watches
removed from that source alone. A config with [audio] alone keeps its topics and discovery. The payloads
themselves: tests/unit/test_source_topics.py."""

from __future__ import annotations

import json

import pytest

from edge.core.events import Event
from edge.sinks import homeassistant
from edge.sinks.topics import Topics
from tools.rig.daemon import daemon_config_text
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have, wait_until

pytestmark = pytest.mark.skipif(not have("mosquitto"), reason="needs Debian's mosquitto (make test installs it)")

WATCHED = {"kitchen": ["Dog", "Speech"], "porch": ["Doorbell"]}
PI = Topics("edge-audio", "pi")


def _sink(port: int, watched, device: str = "pi"):
    from edge.config import parse_config
    from edge.sinks.mqtt import MqttSink
    cfg = parse_config(daemon_config_text(device={"id": device}, mqtt={
        "host": "127.0.0.1", "port": port, "spool_file": "none", "reconnect_min_seconds": 0.2,
        "reconnect_max_seconds": 0.5})).mqtt
    sink = MqttSink(cfg, device, watched=watched, model="m")
    sink.start()
    assert wait_until(lambda: sink.connected and sink.retained.settled(), 15), sink.health()
    return sink


def _event(kind: str, label: str, source: str) -> Event:
    return Event(kind, f"{source}-{label}", label, 74, 1000.0, None if kind == "start" else 1002.0, 0.9, 0.8,
                 0.0 if kind == "start" else 2.0, -20.0, "pi", "m", "cpu", source=source)


def _retained(port: int, topics=("edge-audio/#", "homeassistant/#")) -> dict[str, bytes]:
    """What a late subscriber (Home Assistant starting) sees."""
    late = Subscriber(port, topics=topics)
    try:
        late.wait(lambda s: False, 1.0)
        return {t: p for t, p in late.retained().items() if p}
    finally:
        late.close()


def _settled(sink) -> bool:
    sink.flush()
    return sink.retained.settled() and not sink.queue_depth


def _sources_at_work(sink) -> None:
    """The daemon's calls: both sources deliver audio, each hears something."""
    for source in WATCHED:
        sink.set_source_status(source, True)
    sink.publish_event(_event("start", "Dog", "kitchen"))
    sink.set_state("Dog", True, source="kitchen")
    sink.publish_event(_event("start", "Doorbell", "porch"))
    sink.publish_event(_event("end", "Doorbell", "porch"))
    sink.set_top("Speech", source="kitchen")
    sink.set_top("Doorbell", source="porch")
    sink.publish_metrics({"delegate": "cpu", "sources": {"kitchen": {}, "porch": {}}})
    sink.publish_metrics({"level_dbfs": -31.5, "windows": 10}, source="kitchen")
    sink.publish_scores({"t_start": 1.0, "top": [["Doorbell", 0.9]]}, source="porch")
    sink.flush()
    assert wait_until(lambda: _settled(sink), 10), sink.health()


def _check_held(held: dict[str, bytes], porch_online: bool = True) -> None:
    kitchen, porch = PI.of("kitchen"), PI.of("porch")
    assert held[PI.status] == b"online"
    assert (held[kitchen.status], held[porch.status]) == (b"online", b"online" if porch_online else b"offline")
    assert (held[kitchen.state("Dog")], held[kitchen.state("Speech")], held[porch.state("Doorbell")]) == (
        b"ON", b"OFF", b"OFF")
    assert (held[kitchen.top], held[porch.top]) == (b"Speech", b"Doorbell")
    assert not any(t.startswith(("edge-audio/pi/state/", "edge-audio/pi/top")) for t in held)  # no "" source here
    configs = {t: json.loads(p) for t, p in held.items() if t.startswith("homeassistant/")}
    assert configs == {t: json.loads(p) for t, p in homeassistant.announcements(PI, "homeassistant", WATCHED, "m")}
    devices = {c["device"]["name"]: c["device"] for c in configs.values()}
    assert sorted(devices) == ["edge-audio pi", "edge-audio pi kitchen", "edge-audio pi porch"]
    assert devices["edge-audio pi porch"]["via_device"] == devices["edge-audio pi"]["identifiers"][0]
    for topic, c in configs.items():
        source = topic.split("/")[2].partition("__")[2]  # homeassistant/<kind>/pi__<source>/<object>/config
        if source:
            assert [a["topic"] for a in c["availability"]] == [PI.status, PI.of(source).status]


def test_two_sources_publish_on_their_own_topics_and_are_devices_of_their_own(broker):
    b = broker()
    live = Subscriber(b.port, topics=("edge-audio/#",))
    sink = _sink(b.port, WATCHED)
    try:
        first = (PI.of("kitchen").status, PI.of("porch").status)  # offline until the daemon says they deliver audio
        assert live.wait(lambda s: all(s.payloads(t) for t in first), 10)
        assert [live.payloads(t) for t in first] == [[b"offline"], [b"offline"]]
        _sources_at_work(sink)
        _check_held(_retained(b.port))
        events = {t: [json.loads(m.payload)["event_id"] for m in live.received() if m.topic == t]
                  for t in (PI.of("kitchen").events, PI.of("porch").events)}
        assert events == {"edge-audio/pi/kitchen/events": ["kitchen-Dog"],
                          "edge-audio/pi/porch/events": ["porch-Doorbell", "porch-Doorbell"]}
        assert json.loads(live.payloads("/pi/kitchen/metrics")[-1]) == {"level_dbfs": -31.5, "windows": 10}
        assert json.loads(live.payloads("/pi/metrics")[-1])["delegate"] == "cpu"
        assert live.payloads("/pi/porch/scores") and not live.payloads("/pi/events")
        # the porch camera is lost; then the broker restarts and forgets everything: it is all sent again
        sink.set_source_status("porch", False)
        sink.flush()
        assert wait_until(lambda: _settled(sink), 10)
        connects = sink.connects
        b.kill()
        b.start()
        assert wait_until(lambda: sink.connects > connects and _settled(sink), 15), sink.health()
        _check_held(_retained(b.port), porch_online=False)
        sink.stop(2.0)  # a clean shutdown: every source offline, then the device
        held = _retained(b.port, ("edge-audio/+/status", "edge-audio/+/+/status"))
        assert held == {PI.status: b"offline", PI.of("kitchen").status: b"offline",
                        PI.of("porch").status: b"offline"}
    finally:
        sink.stop(0.5)
        live.close()


def test_a_label_one_source_no_longer_watches_goes_from_that_source_alone(broker):
    b = broker()
    both = {"kitchen": ["Dog", "Speech"], "porch": ["Dog", "Speech"]}
    _sink(b.port, both).stop(2.0)
    live = Subscriber(b.port, topics=("homeassistant/#", "edge-audio/#"))
    sink = _sink(b.port, {"kitchen": ["Dog"], "porch": ["Dog", "Speech"]})
    try:
        assert live.wait(lambda s: len([m for m in s.received() if not m.payload]) >= 2, 10)
        cleared = {m.topic for m in live.received() if not m.payload}
    finally:
        sink.stop(2.0)
        live.close()
    assert cleared == {"homeassistant/binary_sensor/pi__kitchen/speech/config", PI.of("kitchen").state("Speech")}
    held = _retained(b.port)
    assert PI.of("porch").state("Speech") in held and "homeassistant/binary_sensor/pi__porch/speech/config" in held


@pytest.mark.parametrize("watched", [["Cat", "Dog"], {"": ["Cat", "Dog"]}])
def test_a_config_with_audio_alone_keeps_its_topics_and_discovery(broker, watched):
    b = broker()
    live = Subscriber(b.port, topics=("edge-audio/#",))
    sink = _sink(b.port, watched, device="kitchen")
    try:
        sink.set_source_status("", True)  # the device's status is the sink's own: nothing more to publish
        sink.publish_event(_event("start", "Cat", ""))
        sink.set_state("Cat", True)
        sink.set_top("Cat")
        sink.flush()
        assert wait_until(lambda: _settled(sink), 10)
        held = _retained(b.port)
    finally:
        sink.stop(2.0)
        live.close()
    kitchen = Topics("edge-audio", "kitchen")
    assert [json.loads(m.payload)["event_id"] for m in live.received() if m.topic == kitchen.events] == ["-Cat"]
    legacy = dict(homeassistant.discovery_messages(kitchen, "homeassistant", ["Cat", "Dog"], "m"))
    assert held == {kitchen.status: b"online", kitchen.state("Cat"): b"ON", kitchen.state("Dog"): b"OFF",
                    kitchen.top: b"Cat", **{t: p.encode() for t, p in legacy.items()}}


def test_a_device_that_gains_sources_removes_the_entities_it_had_without_them(broker):
    """[audio] alone, then [[sources]]: the device's own Dog, Top sound, Sound level and Sound event go (with the
    Dog state and the top class), its Delegate and the sources' devices stay; another device is left alone."""
    b = broker()
    for device in ("pi", "barn"):
        sink = _sink(b.port, ["Dog"], device=device)
        sink.set_top("Dog")
        assert wait_until(lambda: _settled(sink), 10)
        sink.stop(2.0)
    sink = _sink(b.port, WATCHED)
    try:
        assert wait_until(lambda: not any(t.startswith(("homeassistant/binary_sensor/pi/", "homeassistant/event/pi/"))
                                          for t in _retained(b.port, ("homeassistant/#",))), 10)
        assert wait_until(lambda: _settled(sink), 10)
        held = _retained(b.port)
    finally:
        sink.stop(2.0)
    assert [t for t in held if t.startswith("homeassistant/") and "/pi/" in t] == \
        ["homeassistant/sensor/pi/delegate/config"]
    assert PI.state("Dog") not in held and PI.top not in held
    barn = Topics("edge-audio", "barn")
    assert held[barn.state("Dog")] == b"OFF" and held[barn.top] == b"Dog"
    assert sum(t.startswith("homeassistant/") and "/barn/" in t for t in held) == 4
    assert sum(t.startswith("homeassistant/") and "/pi__" in t for t in held) == 5 + 4
