"""Daemon wiring with a fake Edge TPU classifier passed through the constructor (no TPU on these machines):
a failing TPU invoke switches to the real CPU model without losing the stream. The daemon through the Sink
interface, and the events a killed run left open in its sink's spool, ended cut short when it starts again. The
TPU failure and the cut-short ends also run with two sources ([[sources]] a and b, each replaying the miaow) on the
one classifier."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest

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


SOURCES = {"one": [""], "two": ["a", "b"]}
LAYOUTS = pytest.mark.parametrize("ids", list(SOURCES.values()), ids=["one source", "two sources"])


def _sources_config(assets, coral_twin, ids: list[str]):
    """_wav_config's daemon with the sources `ids` (['']: [audio] alone; else [[sources]] of those ids), each
    replaying the miaow as fast as it goes; its captures, one per source."""
    if ids == [""]:
        cfg = parse_config(_wav_config(assets, coral_twin))
    else:
        wav = assets / "audio" / "miaow_16k.wav"
        cfg = parse_config(_wav_config(assets, coral_twin, sources=[{"id": i, "source": "wav", "file": wav}
                                                                    for i in ids]))
    return cfg, [Capture(make_source(view.audio), view.audio) for view in cfg.views()]


@LAYOUTS
def test_tpu_failure_mid_stream_falls_back_to_cpu_and_keeps_the_events(assets, coral_twin, class_map, capsys, ids):
    """Every source moves to the CPU at the one switch, and none loses a window of its audio."""
    cfg, captures = _sources_config(assets, coral_twin, ids)
    cpu = Classifier.open(coral_twin, class_map, "cpu")
    opened = []

    def reopen(delegate):
        opened.append(delegate)
        return cpu

    daemon = Daemon(cfg, UnpluggedTpu(cpu, good=3), captures, open_classifier=reopen)
    assert daemon.run() == 0
    assert opened == ["cpu"] and daemon.delegate_switches == 1
    m = daemon.metrics()
    assert m["delegate"] == "cpu" and "Edge TPU invoke failed" in m["delegate_reason"]
    assert [(s.id, s.stats.windows) for s in daemon.sources] == [(i, 13) for i in ids] and m["windows"] == 13 * len(ids)
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    for i in ids:
        mine = [e for e in events if e["source"] == i]
        assert [e["type"] for e in mine] == ["start", "end"]
        assert mine[-1]["delegate"] == "cpu"  # stamped with the delegate actually in use


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


def _run_with(sink: Sink, assets, coral_twin, class_map, ids: list[str] = SOURCES["one"]) -> None:
    cfg, captures = _sources_config(assets, coral_twin, ids)
    daemon = Daemon(cfg, Classifier.open(coral_twin, class_map, "cpu"), captures, sink=sink)
    assert daemon.run() == 0


@LAYOUTS
def test_an_event_left_open_by_a_killed_run_is_ended_cut_short_first(assets, coral_twin, class_map, ids):
    """With two sources a Cat left open on each: each is ended on its own source (its topics, its state)."""
    opened = [dict(_golden_start(), source=i, event_id=f"{n}b1f0c2e9d8a4f6b8c7d6e5f4a3b2c1d")
              for n, i in enumerate(ids, 5)]
    sink = LeftOpen(opened, opened[0]["start_ts"] + 2.0)
    _run_with(sink, assets, coral_twin, class_map, ids)
    ended = sink.events[:len(ids)]
    assert [(e.type, e.label, e.cut_short, e.source) for e in ended] == [("end", "Cat", True, i) for i in ids]
    assert all(e.duration_s == 2.0 for e in ended)
    assert [e.event_id for e in ended] == [p["event_id"] for p in opened]
    # each end goes out first, and Home Assistant is told it is over, on its own source
    assert sink.calls[:2 * len(ids)] == [c for i in ids for c in (("event", "end", "Cat"), ("state", "Cat", False)
                                                                  if not i else ("state", i, "Cat", False))]
    assert not any(e.cut_short for e in sink.events[len(ids):])


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


def test_a_daemons_live_sources_are_spread_over_the_hop_in_whole_reads(coral_twin, class_map):
    from edge.app.daemon import Daemon
    from edge.audio.capture import Capture
    from edge.config import parse_config
    from edge.model.classifier import Classifier
    from edge.sinks.base import Sink
    from tools.rig.daemon import daemon_config_text

    sources = [{"id": f"mic{k}", "device": f"hw:{k}"} for k in range(4)] + [{"id": "file", "source": "wav",
                                                                            "file": "x.wav", "realtime": False}]
    cfg = parse_config(daemon_config_text(mqtt={"enabled": False}, sources=sources))
    captures = [Capture(None, view.audio) for view in cfg.views()]
    daemon = Daemon(cfg, Classifier.open(coral_twin, class_map, "cpu"), captures, Sink())
    assert [s.phase for s in daemon.sources] == [0.0, 0.25, 0.5, 0.75, 0.0]  # a file is not live: no phase
    offsets = []
    for s in daemon.sources:
        s.capture.source = type("Mic", (), {"rate_hz": 16000, "channels": 1})()
        s._new_loop(1)
        offsets.append(s._loop.framer.offset_samples)
    assert offsets == [0, 1024, 3072, 5120, 0]  # whole 1024-frame reads, 7 of them in a 7680-sample hop
