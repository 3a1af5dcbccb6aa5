"""The sink calls per source with a stand-in client (the real broker: tests/integration/test_source_sinks.py): each
source's top class held on its own, a source's status, the retained topics a run starts with, FanOut passing the
source on, make_sinks() taking {source: labels} or a plain list, and what check() says."""

from __future__ import annotations

import io
import json

from edge.config import parse_config
from edge.core.events import Event
from edge.sinks import make_sinks
from edge.sinks.base import FanOut, Sink
from edge.sinks.jsonl import JsonLinesSink
from edge.sinks.mqtt import MqttSink
from tools.rig.daemon import daemon_config_text
from test_mqtt_wiring import Clock, Ok, StandInClient

WATCHED = {"kitchen": ["Dog"], "porch": ["Doorbell", "Dog"]}


def _sink(watched=WATCHED, hold_s: float = 0.0, **mqtt) -> tuple[MqttSink, Clock]:
    cfg = parse_config(daemon_config_text(mqtt={"top_hold_seconds": hold_s, **mqtt})).mqtt
    clock = Clock()
    sink = MqttSink(cfg, "pi", watched=watched, client_factory=lambda password: StandInClient(), clock=clock)
    sink._on_connect(sink.client, None, None, Ok())
    return sink, clock


def _sent(sink: MqttSink) -> dict[str, str]:
    """The audio loop goes to sleep, the network thread sends what waits, the broker acknowledges it: topic -> the
    last payload sent."""
    sink.flush()
    return _network_thread(sink)


def _network_thread(sink: MqttSink) -> dict[str, str]:
    for _ in range(100):
        before = len(sink.client.published)
        sink._pump()
        for mid in range(before + 1, len(sink.client.published) + 1):
            sink._on_publish(sink.client, None, mid, Ok())
        if len(sink.client.published) == before:
            break
    return {t: p for t, p, *_ in sink.client.published}


def test_a_run_starts_with_each_source_offline_and_its_labels_off():
    sink, _ = _sink(homeassistant=False)
    assert sink.retained.current() == {
        "edge-audio/pi/status": "online", "edge-audio/pi/kitchen/status": "offline",
        "edge-audio/pi/porch/status": "offline", "edge-audio/pi/kitchen/state/dog": "OFF",
        "edge-audio/pi/porch/state/doorbell": "OFF", "edge-audio/pi/porch/state/dog": "OFF"}
    sink.set_source_status("kitchen", True)
    sink.set_source_status("", False)  # the device's status is the sink's own (online while connected, the will)
    sink.set_state("Dog", True, source="porch")
    sent = _sent(sink)
    assert (sent["edge-audio/pi/kitchen/status"], sent["edge-audio/pi/porch/status"]) == ("online", "offline")
    assert sent["edge-audio/pi/status"] == "online"
    assert (sent["edge-audio/pi/porch/state/dog"], sent["edge-audio/pi/kitchen/state/dog"]) == ("ON", "OFF")


def test_events_scores_and_metrics_go_to_the_source_s_topics():
    sink, _ = _sink(homeassistant=False)
    for source in ("kitchen", "porch", ""):
        sink.publish_event(Event("start", f"e-{source}", "Dog", 74, 1.0, None, 0.9, 0.8, 0.0, -20.0, "pi",
                                 source=source))
    assert [m.topic for m in sink.outbox] == ["edge-audio/pi/kitchen/events", "edge-audio/pi/porch/events",
                                              "edge-audio/pi/events"]  # one ordered outbox for every source
    sink.publish_metrics({"level_dbfs": -40.0}, source="porch")
    sink.publish_metrics({"sources": {}})
    sink.publish_scores({"top": []}, source="kitchen")
    assert [(m.topic, m.retain) for m in sink._direct] == [
        ("edge-audio/pi/porch/metrics", True), ("edge-audio/pi/metrics", True), ("edge-audio/pi/kitchen/scores", False)]


def test_one_metrics_pass_of_the_most_sources_keeps_the_device_s_own_payload():
    from edge.sourceconfig import MAX_SOURCES
    ids = [f"s{i:03d}" for i in range(MAX_SOURCES)]
    sink, _ = _sink({s: ["Dog"] for s in ids}, homeassistant=False)
    for s in ids:
        sink.set_top("Speech", source=s)
    sink.publish_metrics({"sources": {}})  # as Daemon._metrics: the device's payload, then each source's part
    for s in ids:
        sink.publish_metrics({"windows": 1}, source=s)
    sent = _sent(sink)
    assert sink.dropped_other == 0 and sent["edge-audio/pi/metrics"] == '{"sources": {}}'
    assert all(f"edge-audio/pi/{s}/metrics" in sent and f"edge-audio/pi/{s}/top" in sent for s in ids)


def test_each_source_holds_its_own_top_class():
    sink, clock = _sink(hold_s=3.0, homeassistant=False)
    sink.set_top("Dog", source="kitchen")
    sink.set_top("Doorbell", source="porch")  # each source's first top class goes out at once
    assert _sent(sink)["edge-audio/pi/kitchen/top"] == "Dog"
    sink.set_top("Speech", source="kitchen")  # held...
    clock.now += 2.0
    sink.set_top("Speech", source="porch")  # ...and this one from now
    clock.now += 1.5
    sent = _sent(sink)
    assert (sent["edge-audio/pi/kitchen/top"], sent["edge-audio/pi/porch/top"]) == ("Speech", "Doorbell")
    clock.now += 2.0
    assert _sent(sink)["edge-audio/pi/porch/top"] == "Speech" and not sink.sources.holding


def test_a_clean_stop_says_every_source_is_offline_then_the_device():
    sink, _ = _sink(homeassistant=False)
    for source in WATCHED:
        sink.set_source_status(source, True)
    _sent(sink)
    sink._connected = True
    sink.net.wake = lambda: _network_thread(sink)  # at once
    sink.stop(0.5)
    statuses = [(t, p) for t, p, *_ in sink.client.published if t.endswith("/status")]
    assert statuses[-3:] == [("edge-audio/pi/kitchen/status", "offline"), ("edge-audio/pi/porch/status", "offline"),
                             ("edge-audio/pi/status", "offline")]


def test_check_says_how_many_payloads_for_how_many_sources():
    assert _sink()[0].check(print).endswith("; 10 Home Assistant discovery payloads for 2 sources")  # 1 + 4 + 5
    assert _sink(["Cat"])[0].check(print).endswith("; 4 Home Assistant discovery payloads for 1 source")


class Recorder(Sink):
    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        if name in ("set_state", "set_top", "publish_scores", "publish_metrics", "set_source_status"):
            return lambda *a, **k: self.calls.append((name, a, k))
        return object.__getattribute__(self, name)


def test_fanout_passes_the_source_on():
    one, two = Recorder(), Recorder()
    fan = FanOut([one, two])
    fan.set_state("Dog", True, source="porch")
    fan.set_top("Dog", source="porch")
    fan.publish_scores({}, source="porch")
    fan.publish_metrics({}, source="porch")
    fan.set_source_status("porch", False)
    fan.set_state("Dog", False)
    assert one.calls == two.calls and [c[2].get("source", c[1][0]) for c in one.calls] == ["porch"] * 5 + [""]


def test_make_sinks_takes_labels_per_source_or_a_plain_list(tmp_path):
    cfg = parse_config(daemon_config_text(mqtt={"enabled": True, "spool_file": "none"}))
    assert make_sinks(cfg, WATCHED, "m").watched == WATCHED
    assert make_sinks(cfg, ["Cat"], "m").watched == {"": ["Cat"]}
    out = io.StringIO()
    lines = JsonLinesSink(stream=out)  # the source is in the event; the other calls are no-ops
    lines.set_state("Dog", True, source="porch")
    lines.set_source_status("porch", True)
    lines.publish_event(Event("start", "e", "Dog", 74, 1.0, None, 0.9, 0.8, 0.0, -20.0, "pi", source="porch"))
    assert json.loads(out.getvalue())["source"] == "porch"
