"""The event payload is a contract with everything that consumes it (Home Assistant automations, scripts reading
the JSON lines, the monitor). tests/golden/event_v1.json is that contract: the schema and both sinks must produce
it exactly. Within a schema version fields are only added; renaming or removing one means a new version."""

from __future__ import annotations

import io
import json
from pathlib import Path

from edge.config import parse_config
from edge.core.events import SCHEMA_VERSION, Event
from edge.sinks.jsonl import JsonLinesSink
from edge.sinks.mqtt import MqttSink

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "event_v1.json"


def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def event_of(payload: dict) -> Event:
    """The Event that the golden payload describes, built from its typed fields."""
    fields = {k: payload[k] for k in Event.__dataclass_fields__}
    return Event(**fields)


def test_the_schema_produces_the_golden_payload():
    g = golden()
    assert g["schema"] == SCHEMA_VERSION == 1
    assert event_of(g).to_dict() == g
    assert set(g) == {"schema", "type", "event_id", "label", "class_index", "start_ts", "end_ts", "start_time",
                      "end_time", "peak_score", "mean_score", "duration_s", "level_dbfs", "device_id", "model",
                      "delegate", "cut_short"}
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
    cfg = parse_config("[mqtt]\nprefix = 'edge-audio'\n").mqtt
    sink = MqttSink(cfg, "kitchen", client_factory=lambda password: StandInClient())
    sink.publish_event(event_of(golden()))
    [message] = list(sink.outbox)
    assert message.topic == "edge-audio/kitchen/events" and message.qos == 1
    assert json.loads(message.payload) == golden()
