"""The event payload is a contract with everything that consumes it (Home Assistant automations, scripts reading
the JSON lines, the monitor). tests/golden/event_v1.json is that contract: the schema and both sinks must produce
it exactly. Within a schema version fields are only added; renaming or removing one means a new version."""

from __future__ import annotations

import io
import json

import pytest
from pathlib import Path

from edge.config import parse_config
from edge.core.events import SCHEMA_VERSION, Event
from edge.sinks.jsonl import JsonLinesSink
from edge.sinks.mqtt import MqttSink
from tools.rig.daemon import daemon_config_text

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "event_v1.json"


def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def event_of(payload: dict) -> Event:
    """The Event that the golden payload describes, built from its typed fields."""
    fields = {k: payload[k] for k in Event.__dataclass_fields__ if k in payload}  # clip: only on a clip's end
    return Event(**fields)


def test_the_schema_produces_the_golden_payload():
    g = golden()
    assert g["schema"] == SCHEMA_VERSION == 1
    assert event_of(g).to_dict() == g
    assert set(g) == {"schema", "type", "event_id", "label", "class_index", "start_ts", "end_ts", "start_time",
                      "end_time", "peak_score", "mean_score", "duration_s", "level_dbfs", "device_id", "model",
                      "delegate", "cut_short", "source"}
    assert g["start_time"].endswith("Z") and g["end_time"].endswith("Z")


def test_the_json_lines_sink_writes_the_golden_payload(tmp_path):
    out = tmp_path / "events.jsonl"
    sink = JsonLinesSink(str(out))
    sink.start()
    sink.publish_event(event_of(golden()))
    sink.publish_event(event_of(golden()))
    sink.stop(1.0)
    lines = out.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [golden(), golden()]


def test_the_json_lines_sink_writes_to_a_stream_by_default():
    stream = io.StringIO()
    sink = JsonLinesSink(stream=stream)
    sink.publish_event(event_of(golden()))
    assert json.loads(stream.getvalue()) == golden()


class StandInClient:
    def publish(self, topic, payload, qos=0, retain=False):
        pass


def test_the_mqtt_sink_queues_the_golden_payload_on_the_events_topic():
    """On its source's events topic; an event of a config with [audio] alone (no source) on the device's."""
    cfg = parse_config(daemon_config_text(mqtt={"prefix": "edge-audio"})).mqtt
    sink = MqttSink(cfg, "kitchen", client_factory=lambda password: StandInClient())
    sink.publish_event(event_of(golden()))
    sink.publish_event(event_of({**golden(), "source": ""}))
    named, plain = list(sink.outbox)
    assert named.topic == "edge-audio/kitchen/living-room/events" and named.qos == 1
    assert json.loads(named.payload) == golden()
    assert plain.topic == "edge-audio/kitchen/events" and plain.qos == 1


START = Event(type="start", event_id="e1", label="Dog", class_index=69, start_ts=1764500000.25, end_ts=None,
              peak_score=0.61, mean_score=0.61, duration_s=0.0, level_dbfs=-30.5)


def test_from_dict_is_the_exact_round_trip_of_to_dict():
    end = event_of(golden())
    stamped = Event(**{**START.__dict__, "device_id": "kitchen", "model": "yamnet-coral", "delegate": "edgetpu"})
    cut = Event(**{**end.__dict__, "cut_short": True})
    for event in (START, stamped, end, cut):
        payload = event.to_dict()
        assert Event.from_dict(payload) == event
        assert Event.from_dict(json.loads(event.to_json())) == event  # through JSON too
        assert Event.from_dict(payload).to_dict() == payload
    assert Event.from_dict(golden()).to_dict() == golden()


def test_from_dict_reads_past_what_it_does_not_keep_and_fills_what_came_later():
    old = {k: v for k, v in START.to_dict().items() if k not in ("device_id", "model", "delegate", "cut_short")}
    assert Event.from_dict(old) == START
    assert Event.from_dict(dict(START.to_dict(), added_in_a_later_release=1)) == START
    assert Event.from_dict(dict(START.to_dict(), start_ts=1764500000)).start_ts == 1764500000.0  # a JSON integer


def test_from_dict_refuses_what_is_not_an_event_with_one_line_naming_the_field():
    good = golden()
    bad = {"without label": {k: v for k, v in good.items() if k != "label"},
           "class_index True": dict(good, class_index=True), "start_ts 'x'": dict(good, start_ts="x"),
           "peak_score None": dict(good, peak_score=None), "type 'middle'": dict(good, type="middle"),
           "cut_short 1": dict(good, cut_short=1), "schema 2": dict(good, schema=2), "not list": [good]}
    for words, payload in bad.items():
        try:
            Event.from_dict(payload)
        except ValueError as exc:
            assert words in str(exc) and "\n" not in str(exc), exc
        else:
            raise AssertionError(f"accepted: {words}")


def test_an_end_with_a_clip_carries_it_and_an_event_without_one_has_no_clip_key():
    clip = {"status": "kept", "file": "5b1f.flac", "format": "flac", "seconds": 8.5, "bytes": 81234,
            "sha256": "ab" * 32, "offset_s": 3.0}
    payload = {**golden(), "clip": clip}
    event = Event.from_dict(payload)
    assert event.clip == clip and event.to_dict() == payload
    assert "clip" not in event_of(golden()).to_dict()
    with pytest.raises(ValueError, match="clip"):
        Event.from_dict({**golden(), "clip": "kept"})
