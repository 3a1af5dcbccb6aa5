"""Daemon wiring with a fake Edge TPU classifier passed through the constructor (no TPU on these machines):
a failing TPU invoke switches to the real CPU model without losing the stream. The daemon through the Sink
interface, and the events a killed run left open in its sink's spool, ended cut short when it starts again."""

import copy
import dataclasses
import json
from pathlib import Path

from edge.model.classifier import Classifier
from edge.config import parse_config
from edge.app.daemon import Daemon
from edge.app.startup import build
from edge.audio import make_source
from edge.audio.capture import Capture
from edge.sinks.base import Sink
from edge.sinks.mqtt import MqttSink
from daemonparts import LeftOpen, RecordingSink
from tools.rig.daemon import daemon_config_text

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "event_v1.json"


class UnpluggedTpu:
    """Looks like an Edge TPU classifier whose USB device went away after `good` windows."""

    def __init__(self, real: Classifier, good: int):
        self._real, self._good = real, good
        self.labels, self.params, self.frontend = real.labels, real.params, real.frontend
        self.model_name = real.model_name
        self.thresholds = real.thresholds
        self.grid_samples = real.grid_samples
        self.decision = dataclasses.replace(copy.copy(real.decision), delegate="edgetpu", reason="test TPU")

    def new_frontend(self):
        return self._real.new_frontend()

    def classify(self, window, start, frontend=None):
        if self._good <= 0:
            raise RuntimeError("Edge TPU: failed to invoke (USB transfer error)")
        self._good -= 1
        return self._real.classify(window, start, frontend)

    def describe(self):
        return "fake Edge TPU"

    def top(self, scores, k):
        return self._real.top(scores, k)


def _wav_config(assets, coral_twin, audio: dict | None = None, detector: dict | None = None,
                mqtt: dict | None = None, **sections) -> str:
    """The miaow replayed as fast as it goes, Cat watched, no MQTT; `audio` and `detector` add to those tables,
    `mqtt` replaces that one."""
    return daemon_config_text(
        audio={"source": "wav", "file": assets / "audio" / "miaow_16k.wav", "realtime": False, **(audio or {})},
        model={"path": coral_twin}, detector={"allow": ["Cat"], **(detector or {})},
        mqtt=mqtt or {"enabled": False}, **sections)


def test_tpu_failure_mid_stream_falls_back_to_cpu_and_keeps_the_events(assets, coral_twin, class_map, capsys):
    cfg = parse_config(_wav_config(assets, coral_twin))
    cpu = Classifier.open(coral_twin, class_map, "cpu")
    opened = []

    def reopen(delegate):
        opened.append(delegate)
        return cpu

    daemon = Daemon(cfg, UnpluggedTpu(cpu, good=3), Capture(make_source(cfg.audio), cfg.audio),
                    open_classifier=reopen)
    assert daemon.run() == 0
    assert opened == ["cpu"] and daemon.delegate_switches == 1
    m = daemon.metrics()
    assert m["delegate"] == "cpu" and "Edge TPU invoke failed" in m["delegate_reason"] and m["windows"] == 13
    events = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert '"type": "start"' in events[0] and '"type": "end"' in events[-1]
    assert '"delegate": "cpu"' in events[-1]  # stamped with the delegate actually in use


def test_the_daemon_talks_to_any_sink_through_the_interface(assets, coral_twin, class_map):
    cfg = parse_config(_wav_config(assets, coral_twin))
    sink = RecordingSink()
    daemon = Daemon(cfg, Classifier.open(coral_twin, class_map, "cpu"), Capture(make_source(cfg.audio), cfg.audio),
                    sink=sink)
    assert daemon.run() == 0
    kinds = [c for c in sink.calls if c[0] in ("event", "state")]
    assert kinds == [("event", "start", "Cat"), ("state", "Cat", True), ("event", "end", "Cat"),
                     ("state", "Cat", False)]
    assert ("top", "Cat") in sink.calls and sink.calls[-1] == ("metrics", 13)
    assert daemon.metrics()["queue_depth"] == 7 and daemon.metrics()["mqtt_connected"] is None


def test_the_json_lines_sink_is_one_config_section(assets, coral_twin, tmp_path):
    log = tmp_path / "events.jsonl"
    cfg = parse_config(_wav_config(assets, coral_twin, jsonl={"enabled": True, "path": log}))
    daemon = build(cfg)
    assert daemon.run() == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    golden = json.loads(GOLDEN.read_text())
    assert [(e["type"], e["label"]) for e in events] == [("start", "Cat"), ("end", "Cat")]
    assert all(set(e) == set(golden) for e in events)


def _golden_start() -> dict:
    return dict(json.loads(GOLDEN.read_text()), type="start", end_ts=None, end_time=None)


def _run_with(sink: Sink, assets, coral_twin, class_map) -> None:
    cfg = parse_config(_wav_config(assets, coral_twin))
    daemon = Daemon(cfg, Classifier.open(coral_twin, class_map, "cpu"), Capture(make_source(cfg.audio), cfg.audio),
                    sink=sink)
    assert daemon.run() == 0


def test_an_event_left_open_by_a_killed_run_is_ended_cut_short_first(assets, coral_twin, class_map):
    start = _golden_start()
    sink = LeftOpen([start], start["start_ts"] + 2.0)
    _run_with(sink, assets, coral_twin, class_map)
    first = sink.events[0]
    assert (first.type, first.label, first.cut_short) == ("end", "Cat", True)
    assert first.duration_s == 2.0 and first.event_id == "5b1f0c2e9d8a4f6b8c7d6e5f4a3b2c1d"
    assert sink.calls[1] == ("state", "Cat", False)  # Home Assistant is told it is over
    assert not any(e.cut_short for e in sink.events[1:])


def test_a_spool_record_that_is_no_event_is_skipped_with_one_line_and_the_rest_ended(assets, coral_twin, class_map,
                                                                                      caplog):
    """Each open event is read back as the Event it was (Event.from_dict) and ended, cut short; a record that is no
    event is skipped with one line."""
    start = _golden_start()
    broken = {k: v for k, v in start.items() if k != "label"}
    sink = LeftOpen([broken, start], start["start_ts"] + 1.5)
    _run_with(sink, assets, coral_twin, class_map)
    first = sink.events[0]
    assert (first.type, first.label, first.cut_short, first.duration_s) == ("end", "Cat", True, 1.5)
    assert (first.event_id, first.peak_score, first.device_id) == (start["event_id"], 0.8123, "kitchen")
    assert [c for c in sink.calls if c[0] == "state"][0] == ("state", "Cat", False)
    [skipped] = [r.getMessage() for r in caplog.records if "spool" in r.getMessage()]
    assert "event without label" in skipped and "\n" not in skipped
    assert not any(e.cut_short for e in sink.events[1:])


def test_an_open_event_from_a_run_that_died_before_it_was_alive_again_ends_where_it_began(assets, coral_twin,
                                                                                          class_map):
    start = _golden_start()
    sink = LeftOpen([start], 0.0)  # never marked alive after the start
    _run_with(sink, assets, coral_twin, class_map)
    first = sink.events[0]
    assert first.cut_short and first.end_ts == first.start_ts == start["start_ts"] and first.duration_s == 0.0


def test_top_reads_none_below_the_level_gate(assets, coral_twin, class_map):
    cfg = parse_config(_wav_config(assets, coral_twin, detector={"min_level_dbfs": -1.0}))
    sink = RecordingSink()
    daemon = Daemon(cfg, Classifier.open(coral_twin, class_map, "cpu"), Capture(make_source(cfg.audio), cfg.audio),
                    sink=sink)
    assert daemon.run() == 0
    assert [c for c in sink.calls if c[0] == "top"] == [("top", "none")] and daemon.gated == daemon.windows


class BrokenClient:
    """A client whose connect() fails in a way no retry can fix (a bug, or a setting the library rejects)."""

    def will_set(self, *a, **k):
        pass

    def connect(self, *a, **k):
        raise RuntimeError("unexpected state in the MQTT client")

    def disconnect(self):
        pass


def test_a_dead_mqtt_thread_stops_the_daemon_with_status_1(assets, coral_twin, class_map, tmp_path, caplog):
    cfg = parse_config(_wav_config(assets, coral_twin, audio={"realtime": True, "loop": True},
                                   mqtt={"spool_file": tmp_path / "spool.db"}))
    sink = MqttSink(cfg.mqtt, "pi", client_factory=lambda password: BrokenClient(),
                    spool=str(tmp_path / "spool.db"))
    daemon = Daemon(cfg, Classifier.open(coral_twin, class_map, "cpu"), Capture(make_source(cfg.audio), cfg.audio),
                    sink=sink)
    assert daemon.run() == 1  # systemd's Restart=on-failure starts a fresh process
    assert "MQTT thread stopped: RuntimeError: unexpected state in the MQTT client" in daemon.metrics()["failed"]
    assert len([r for r in caplog.records if "MQTT thread stopped" in r.getMessage()]) == 2  # its line, the stop
