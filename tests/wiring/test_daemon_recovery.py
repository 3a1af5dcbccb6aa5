"""Events a killed run left open, as the daemon finds them in its sink's spool when it starts: each one is read back
as the Event it was (Event.from_dict) and ended, cut short; a record that is no event is skipped with one line."""

import json
from pathlib import Path

from edge.app.daemon import Daemon
from edge.audio import make_source
from edge.audio.capture import Capture
from edge.config import parse_config
from edge.model.classifier import Classifier
from edge.sinks.base import Sink
from tools.rig.daemon import daemon_config_text

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "event_v1.json"


class Spooled(Sink):
    """A sink whose spool holds `open_events`; keeps what the daemon hands it."""

    def __init__(self, open_events: list, last_alive: float):
        self.open_events, self.last_alive = open_events, last_alive
        self.events, self.states = [], []

    def recovered_open_events(self):
        return self.open_events, self.last_alive

    def publish_event(self, event):
        self.events.append(event)

    def set_state(self, label, on):
        self.states.append((label, on))


def _run(assets, coral_twin, class_map, sink: Sink) -> None:
    cfg = parse_config(daemon_config_text(
        audio={"source": "wav", "file": assets / "audio" / "miaow_16k.wav", "realtime": False},
        model={"path": coral_twin}, detector={"allow": ["Cat"]}, mqtt={"enabled": False}))
    daemon = Daemon(cfg, Classifier.open(coral_twin, class_map, "cpu"), Capture(make_source(cfg.audio), cfg.audio),
                    sink=sink)
    assert daemon.run() == 0


def test_a_spool_record_that_is_no_event_is_skipped_with_one_line_and_the_rest_ended(assets, coral_twin, class_map,
                                                                                      caplog):
    start = dict(json.loads(GOLDEN.read_text()), type="start", end_ts=None, end_time=None)
    broken = {k: v for k, v in start.items() if k != "label"}
    sink = Spooled([broken, start], start["start_ts"] + 1.5)
    _run(assets, coral_twin, class_map, sink)
    first = sink.events[0]
    assert (first.type, first.label, first.cut_short, first.duration_s) == ("end", "Cat", True, 1.5)
    assert (first.event_id, first.peak_score, first.device_id) == (start["event_id"], 0.8123, "kitchen")
    assert sink.states[0] == ("Cat", False)
    [skipped] = [r.getMessage() for r in caplog.records if "spool" in r.getMessage()]
    assert "event without label" in skipped and "\n" not in skipped
    assert not any(e.cut_short for e in sink.events[1:])


def test_an_open_event_from_a_run_that_died_before_it_was_alive_again_ends_where_it_began(assets, coral_twin,
                                                                                          class_map):
    start = dict(json.loads(GOLDEN.read_text()), type="start", end_ts=None, end_time=None)
    sink = Spooled([start], 0.0)  # never marked alive after the start
    _run(assets, coral_twin, class_map, sink)
    first = sink.events[0]
    assert first.cut_short and first.end_ts == first.start_ts == start["start_ts"] and first.duration_s == 0.0
