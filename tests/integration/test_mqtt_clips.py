"""Clips over MQTT (mqtt.clips), on a real Mosquitto: a kept clip follows its end event through the ordered outbox as a
small reference and goes out as the file's exact bytes on <prefix>/<device>/clips/<event id> (QoS 1, not retained),
read only when it is sent; it survives a restart in the spool; a clip deleted by the retention before it could go, one
over mqtt.clip_max_kb or one whose bytes changed is set aside with one line and counted, and delivery goes on; with
mqtt.clips off nothing is sent. The monitor shows a clip's size, never its bytes."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

from edge.app.monitor import Watch
from edge.config import MqttConfig
from edge.core.events import Event
from edge.core.files import size_text
from edge.sinks.base import FanOut
from edge.sinks.jsonl import JsonLinesSink
from edge.sinks.topics import Topics
from tools.rig.mqtt import Message, Subscriber
from tools.rig.ports import have, wait_until

needs_broker = pytest.mark.skipif(not have("mosquitto"), reason="needs Debian's mosquitto (make test installs it)")

DEVICE = "kitchen"
EVENTS, CLIPS = f"edge-audio/{DEVICE}/events", f"edge-audio/{DEVICE}/clips/"


class QosSubscriber(Subscriber):
    """The rig's subscriber, noting the QoS each message came with too."""

    def __init__(self, port: int):
        self.qos: list[tuple[str, int]] = []
        super().__init__(port, topics=(EVENTS, CLIPS + "#"))

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.qos.append((msg.topic, msg.qos))
        super()._on_message(client, userdata, msg)

    def clips(self) -> list[Message]:
        return [m for m in self.received() if m.topic.startswith(CLIPS)]

    def event_ids(self) -> list[str]:
        return [f"{e['event_id']}:{e['type']}" for e in self.events()]


def _sink(port: int, spool=None, **mqtt):
    from edge.sinks.mqtt import MqttSink
    cfg = MqttConfig(host="127.0.0.1", port=port, homeassistant=False, reconnect_min_seconds=0.2,
                     reconnect_max_seconds=1.0, **{"clips": True, **mqtt})
    sink = MqttSink(cfg, DEVICE, spool=str(spool) if spool else None)
    sink.start()
    return sink


def _clip(folder, event_id: str, seconds: float = 2.0, fmt: str = "FLAC") -> tuple[dict, str]:
    """A kept clip as the clip store leaves it: noise at 16 kHz in `folder`, and its record."""
    path = folder / f"{event_id}.{fmt.lower()}"
    noise = np.random.default_rng(len(event_id)).normal(0.0, 0.2, int(16000 * seconds)).astype(np.float32)
    soundfile.write(path, noise, 16000, format=fmt)
    data = path.read_bytes()
    record = {"event_id": event_id, "source": "", "label": "Cat", "status": "kept", "file": path.name,
              "format": fmt.lower(), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
              "sample_rate": 16000}
    return record, str(path)


def _event(kind: str, event_id: str, clip: dict | None = None) -> Event:
    return Event(kind, event_id, "Cat", 76, 1_764_500_000.0, None if kind == "start" else 1_764_500_002.0, 0.9, 0.8,
                 0.0 if kind == "start" else 2.0, -20.0, DEVICE, "yamnet_spectra_in", "cpu", clip=clip)


def _detection(sink, event_id: str, record: dict, path: str) -> None:
    """What the daemon does for a kept clip: the start, the end naming the clip, then the clip."""
    sink.publish_event(_event("start", event_id))
    sink.publish_event(_event("end", event_id, {k: v for k, v in record.items() if k != "device_id"}))
    sink.publish_clip(record, path)
    sink.flush()


def _later(sink, event_id: str = "later") -> None:
    sink.publish_event(_event("start", event_id))
    sink.flush()


@needs_broker
def test_a_clip_arrives_as_its_file_after_its_end_event_at_qos_1_not_retained(tmp_path, broker):
    b = broker()
    sub = QosSubscriber(b.port)
    record, path = _clip(tmp_path, "e1")
    sink = _sink(b.port)
    try:
        assert wait_until(lambda: sink.connected, 10)
        lines = io.StringIO()
        _detection(FanOut([JsonLinesSink(stream=lines), sink]), "e1", record, path)  # as the daemon has them
        assert sub.wait(lambda s: len(s.clips()) == 1, 15)
        assert wait_until(lambda: sink.health()["clips_sent"] == 1, 5)
        h = sink.health()
    finally:
        sink.stop(2.0)
        sub.close()
    [clip] = sub.clips()
    assert clip.topic == Topics("edge-audio", DEVICE).clip("e1") == CLIPS + "e1"
    assert clip.payload == Path(path).read_bytes() and clip.payload[:4] == b"fLaC"
    assert clip.retain is False and (clip.topic, 1) in sub.qos
    topics = [m.topic for m in sub.received()]
    assert topics == [EVENTS, EVENTS, clip.topic]  # after its end event
    assert sub.event_ids() == ["e1:start", "e1:end"] and sub.events()[1]["clip"]["sha256"] == record["sha256"]
    assert (h["clips_sent"], h["clips_unsent"], h["queue_depth"], h["delivered_events"]) == (1, 0, 0, 3)
    assert len(lines.getvalue().splitlines()) == 2  # the file log has the events; a clip is not a line


@needs_broker
def test_a_clip_queued_while_the_broker_is_down_is_resent_from_the_spool_after_a_restart(tmp_path, broker):
    b = broker()
    b.kill()
    spool = tmp_path / "spool.db"
    record, path = _clip(tmp_path, "e2", fmt="WAV")
    first = _sink(b.port, spool)
    try:
        _detection(first, "e2", record, path)
    finally:
        first.stop(0.5)
    with sqlite3.connect(spool) as db:
        rows = db.execute("SELECT topic, payload FROM outbox ORDER BY seq").fetchall()
    assert [t for t, _ in rows] == [EVENTS, EVENTS, CLIPS + "e2"]
    assert json.loads(rows[-1][1]) == {"clip": path, "bytes": record["bytes"], "sha256": record["sha256"]}  # not audio
    b.start()
    sub = QosSubscriber(b.port)
    second = _sink(b.port, spool)
    try:
        assert sub.wait(lambda s: len(s.clips()) == 1, 20)
        assert wait_until(lambda: second.health()["queue_depth"] == 0, 5)
        h = second.health()
    finally:
        second.stop(2.0)
        sub.close()
    [clip] = sub.clips()
    assert clip.topic == CLIPS + "e2" and clip.payload == Path(path).read_bytes() and clip.payload[:4] == b"RIFF"
    assert clip.retain is False and (clip.topic, 1) in sub.qos
    assert sub.event_ids() == ["e2:start", "e2:end"] and [m.topic for m in sub.received()][-1] == clip.topic
    assert (h["spool_recovered"], h["clips_sent"], h["clips_unsent"]) == (3, 1, 0)


@needs_broker
def test_a_clip_deleted_before_it_could_be_sent_is_set_aside_once_and_delivery_goes_on(tmp_path, broker, caplog):
    caplog.set_level(logging.INFO, "edge.mqtt")
    b = broker()
    b.kill()
    spool = tmp_path / "spool.db"
    record, path = _clip(tmp_path, "e3")
    first = _sink(b.port, spool)
    try:
        _detection(first, "e3", record, path)
        _later(first)
    finally:
        first.stop(0.5)
    (tmp_path / "e3.flac").unlink()  # the retention took it meanwhile
    b.start()
    sub = QosSubscriber(b.port)
    second = _sink(b.port, spool)
    try:
        assert sub.wait(lambda s: "later:start" in s.event_ids(), 20)
        assert wait_until(lambda: second.health()["queue_depth"] == 0, 5)
        h = second.health()
    finally:
        second.stop(2.0)
        sub.close()
    assert sub.event_ids() == ["e3:start", "e3:end", "later:start"] and sub.clips() == []
    assert (h["clips_unsent"], h["clips_sent"], h["delivered_events"], h["set_aside_events"]) == (1, 0, 3, 1)
    said = [r.getMessage() for r in caplog.records if "clip e3" in r.getMessage()]
    assert len(said) == 1 and "clip e3: deleted before it could be sent" in said[0], said
    with sqlite3.connect(spool) as db:
        [(topic, payload, reason)] = db.execute("SELECT topic, payload, reason FROM dead_letter").fetchall()
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert topic == CLIPS + "e3" and json.loads(payload)["clip"] == path
    assert reason == "clip e3: deleted before it could be sent"


@needs_broker
@pytest.mark.parametrize("trouble", ["too large", "changed"])
def test_a_clip_over_the_limit_or_changed_is_not_published_and_delivery_goes_on(tmp_path, broker, caplog, trouble):
    b = broker()
    sub = QosSubscriber(b.port)
    record, path = _clip(tmp_path, "e4", seconds=1.0, fmt="WAV")  # 32 KB
    if trouble == "changed":
        with open(path, "r+b") as f:
            f.seek(100)
            f.write(b"\x7f")
    sink = _sink(b.port, clip_max_kb=16 if trouble == "too large" else 2048)
    try:
        assert wait_until(lambda: sink.connected, 10)
        _detection(sink, "e4", record, path)
        _later(sink)
        assert sub.wait(lambda s: "later:start" in s.event_ids(), 15)
        h = sink.health()
    finally:
        sink.stop(2.0)
        sub.close()
    assert sub.event_ids() == ["e4:start", "e4:end", "later:start"] and sub.clips() == []
    assert (h["clips_unsent"], h["clips_sent"], h["queue_depth"]) == (1, 0, 0)
    said = [r.getMessage() for r in caplog.records if "clip e4" in r.getMessage()]
    too_large = f"e4.wav is {size_text(os.path.getsize(path))}, over mqtt.clip_max_kb 16: kept on the device only"
    expected = too_large if trouble == "too large" else "e4.wav is no longer the file that was kept"
    assert len(said) == 1 and expected in said[0], said


@needs_broker
def test_with_mqtt_clips_off_a_clip_sends_nothing(tmp_path, broker):
    b = broker()
    sub = QosSubscriber(b.port)
    record, path = _clip(tmp_path, "e5")
    sink = _sink(b.port, clips=False)
    try:
        assert wait_until(lambda: sink.connected, 10)
        _detection(sink, "e5", record, path)
        _later(sink)
        assert sub.wait(lambda s: "later:start" in s.event_ids(), 15)
        h = sink.health()
    finally:
        sink.stop(2.0)
        sub.close()
    assert sub.event_ids() == ["e5:start", "e5:end", "later:start"] and sub.clips() == []
    assert (h["produced_events"], h["clips_sent"], h["clips_unsent"]) == (3, 0, 0)


def test_the_monitor_shows_a_clips_size_never_its_bytes(capsys):
    assert Topics.parse(CLIPS + "e6") == (DEVICE, "", "clips/e6")
    assert Topics.parse(f"edge-audio/{DEVICE}/a/events") == (DEVICE, "a", "events")
    audio = b"fLaC\x00\xff\xfe" + bytes(range(256)) * 40
    for as_json in (False, True):
        args = SimpleNamespace(prefix="edge-audio", json=as_json, count=0)
        Watch(args, []).on_message(None, None, SimpleNamespace(topic=CLIPS + "e6", payload=audio, retain=False))
    text, as_json = capsys.readouterr().out.splitlines()
    assert text.split() == [DEVICE, "clip", "e6:", str(len(audio)), "bytes"]
    assert json.loads(as_json) == {"topic": CLIPS + "e6", "retained": False, "clip": "e6", "bytes": len(audio)}
