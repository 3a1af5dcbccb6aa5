"""The recorder's ingest against a real Mosquitto and the real store (SQLite, and a real PostgreSQL): two
`edge-audio recorder` processes on one shared subscription take the events and clips of real daemons on devset
recordings and of a publisher; one is killed (SIGKILL) in the middle and started again with the same client id;
every event reaches the store exactly once, start joined with end, and every clip as the file the daemon kept.
Bad input gets one log line per reason, is counted, and stops nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge.app.recorder.ingest import Ingest
from edge.app.recorder.options import Options
from edge.app.recorder.store import open_store
from edge.core.events import Event
from edge.core.wavfile import write_wav
from tools import REPO
from tools.rig.daemon import DaemonProcess, kit_env, write_daemon_config
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have, wait_until

pytestmark = [pytest.mark.skipif(not have("mosquitto"), reason="needs Debian's mosquitto (make test installs it)"),
              pytest.mark.slow]
RATE = 16000
SCENES = {"porch": ("esc50_wind_2-104952-A-16.wav", "esc50_clock_alarm_2-104475-A-37.wav",
                    "esc50_wind_2-104952-A-16.wav", "esc50_thunderstorm_*.wav", "esc50_wind_2-104952-A-16.wav"),
          "yard": ("esc50_hen_*.wav", "esc50_wind_2-104952-A-16.wav", "esc50_clock_alarm_*.wav",
                   "esc50_sheep_*.wav", "esc50_pig_*.wav")}
BATCH = 150  # events (a start and an end each) the publisher sends in each of its three batches


class Recorder:
    """`edge-audio recorder --http none` as a child process, its log in a file."""

    def __init__(self, folder: Path, port: int, db: str, client_id: str):
        self.log_path = folder / f"{client_id}.log"
        self.args = [sys.executable, "-m", "edge", "recorder", "--http", "none", "--host", "127.0.0.1", "--port",
                     str(port), "--db", db, "--clips", str(folder / "clips"), "--client-id", client_id]
        self.proc = None
        self.start()

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.args, cwd=REPO, env=kit_env(), stdout=subprocess.DEVNULL, stderr=log)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_connected(self, times: int = 1) -> bool:
        return wait_until(lambda: self.log.count("subscribed") >= times or self.proc.poll() is not None,
                          30, 0.05) and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self.kill()


def _devset(assets: Path, pattern: str) -> np.ndarray:
    samples, rate = soundfile.read(min((assets / "devset" / "clips").glob(pattern)), dtype="int16")
    assert rate == RATE
    return samples


def _daemon(tmp_path: Path, assets, model, port: int, device: str) -> DaemonProcess:
    """A real daemon replaying a devset scene as fast as it goes, clips kept (privacy off) and sent over MQTT."""
    folder = tmp_path / device
    folder.mkdir()
    write_wav(folder / "scene.wav", np.concatenate([_devset(assets, p) for p in SCENES[device]]), RATE)
    cfg = write_daemon_config(
        folder / "daemon.toml", device={"id": device}, model={"path": model},
        audio={"source": "wav", "file": folder / "scene.wav", "realtime": False}, detector={},
        mqtt={"host": "127.0.0.1", "port": port, "spool_file": folder / "spool.db", "clips": True,
              "reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1.0},
        metrics={"interval_seconds": 1}, clips={"enabled": True, "folder": folder / "clips", "privacy": "off"})
    return DaemonProcess(cfg)


def _event(kind: str, n: int, device: str = "synth") -> Event:
    start = 1_764_500_000.0 + n * 10
    return Event(kind, f"synth-{n:05d}", "Dog" if n % 3 else "Cat", 74, start, None if kind == "start" else start + 2,
                 0.9, 0.8, 0.0 if kind == "start" else 2.0, -20.0, device, "yamnet", "cpu")


def _publish(client, topic: str, payloads) -> None:
    infos = [client.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)


def _publisher(port: int):
    import paho.mqtt.client as paho
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="synth-publisher", protocol=paho.MQTTv5)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _batch(client, first: int) -> None:
    _publish(client, "edge-audio/synth/events",
             [_event(kind, n).to_json() for n in range(first, first + BATCH) for kind in ("start", "end")])


def _stored(store) -> list[dict]:
    return store.events(limit=100_000)


def _produced(observer) -> dict[str, set]:
    """event id -> the message types the broker carried for it (as a subscriber of every topic saw them)."""
    out: dict[str, set] = {}
    for e in observer.events():
        out.setdefault(e["event_id"], set()).add(e["type"])
    return out


def _clips(observer) -> dict[str, bytes]:
    return {m.topic.rsplit("/", 1)[1]: m.payload for m in observer.received() if "/clips/" in m.topic}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'recorder.db'}"
    return request.getfixturevalue("postgres").url


def test_two_recorders_one_killed_in_the_middle_store_every_event_and_clip_exactly_once(
        tmp_path, broker, coral_twin, assets, db_url):
    b = broker()
    observer = Subscriber(b.port, "edge-audio/#")
    store = open_store(db_url)  # the test's own connection: migrated before the recorders start
    a = Recorder(tmp_path, b.port, db_url, "rec-a")
    other = Recorder(tmp_path, b.port, db_url, "rec-b")
    daemons, publisher = [], None
    try:
        assert a.wait_connected() and other.wait_connected(), a.log + other.log
        daemons = [_daemon(tmp_path, assets, coral_twin, b.port, d) for d in SCENES]
        publisher = _publisher(b.port)
        _batch(publisher, 0)
        assert wait_until(lambda: len(_stored(store)) >= BATCH // 3, 60), a.log + other.log
        a.kill()  # SIGKILL: whatever it had received and not acknowledged the broker keeps for its session
        killed_with = len(_stored(store))
        _batch(publisher, BATCH)  # while it is away: its share waits in its session
        restarted = time.monotonic()
        a.start()
        assert a.wait_connected(times=2) and "(session resumed)" in a.log, a.log
        _batch(publisher, 2 * BATCH)
        for d in daemons:
            assert d.proc.wait(180) == 0, d.log_tail(20)

        def complete() -> bool:
            produced = _produced(observer)
            rows = {r["event_id"]: r for r in _stored(store)}
            clips = _clips(observer)
            return set(rows) == set(produced) and all(r["end_ts"] is not None for r in rows.values()) and \
                all(store.clip(i) is not None for i in clips)
        assert wait_until(complete, 120, 0.2), (len(_stored(store)), len(_produced(observer)), a.log, other.log)
        caught_up = time.monotonic() - restarted
        assert a.terminate() == 0 and other.terminate() == 0, a.log + other.log
        _check_store(store, observer)
        copies = sum(int(m) for m in re.findall(r"(\d+) copies already stored", a.log + other.log))
        daemon_events = sum(1 for i in _produced(observer) if not i.startswith("synth-"))
        print(f"{db_url.split(':')[0]}: {len(_produced(observer))} events produced ({daemon_events} by the daemons, "
              f"{len(_clips(observer))} clips), {len(_stored(store))} stored, {store.totals()}; killed with "
              f"{killed_with} stored; caught up {caught_up:.1f} s after the restart; {copies} copies delivered again "
              f"and recognised")
    finally:
        for d in daemons:
            d.kill()
        if publisher is not None:
            publisher.loop_stop()
            publisher.disconnect()
        a.kill()
        other.kill()
        observer.close()
        store.close()


def _check_store(store, observer) -> None:
    """Every event once, start and end joined; every clip the file its end event names, byte for byte."""
    produced = _produced(observer)
    rows = _stored(store)
    assert len(rows) == len({r["event_id"] for r in rows}) == len(produced)
    assert all(types == {"start", "end"} for types in produced.values())
    assert store.totals()["events"] == len(produced)
    ends = {e["event_id"]: e for e in observer.events() if e["type"] == "end"}
    kept = {i for i, e in ends.items() if e.get("clip", {}).get("status") == "kept"}
    clips = _clips(observer)
    assert kept and set(clips) == kept and store.totals()["clips"] == len(kept)
    for event_id, data in clips.items():
        clip = store.clip(event_id)
        assert Path(clip["path"]).read_bytes() == data
        assert clip["sha256"] == hashlib.sha256(data).hexdigest() == ends[event_id]["clip"]["sha256"]
        assert store.event(event_id)["has_clip"]


def test_bad_input_is_said_once_per_reason_counted_and_stops_nothing(tmp_path, broker, caplog):
    b = broker()
    store = open_store(f"sqlite:///{tmp_path / 'recorder.db'}")
    ingest = Ingest(store, Options(host="127.0.0.1", port=b.port, client_id="rec-bad", clips_dir=str(tmp_path / "c"),
                                   clip_max_bytes=4096, clip_wait_s=1.0))
    caplog.set_level(logging.WARNING, "edge.recorder")
    ingest.start()
    client = _publisher(b.port)
    try:
        assert wait_until(lambda: ingest.connected, 10)
        flac = b"fLaC" + bytes(1000)
        bad = [("edge-audio/kitchen/events", b"{not json"), ("edge-audio/kitchen/events", b"{not json either"),
               ("edge-audio/kitchen/events", json.dumps({"type": "start", "event_id": "x"})),
               ("edge-audio/kitchen/clips/big-1", b"fLaC" + bytes(5000)),
               ("edge-audio/kitchen/clips/never-seen", flac),
               ("edge-audio/kitchen/clips/noise", b"MThd" + bytes(100)),
               ("edge-audio/../events", _event("start", 1, "..").to_json()),
               ("edge-audio/kitchen/status", b"sideways")]
        for topic, payload in bad:
            _publish(client, topic, [payload])
        good = [_event("start", 7, "kitchen"), _event("end", 7, "kitchen")]
        sha = hashlib.sha256(flac).hexdigest()
        end = good[1].to_dict()
        end["clip"] = {"status": "kept", "sha256": sha, "bytes": len(flac), "file": "x.flac"}
        _publish(client, "edge-audio/kitchen/events", [good[0].to_json(), json.dumps(end)])
        _publish(client, "edge-audio/kitchen/clips/synth-00007", [flac])
        _publish(client, "edge-audio/kitchen/status", [b"online"])
        expected = {"malformed_json": 2, "bad_event": 1, "clip_too_large": 1, "clip_unknown_event": 1,
                    "clip_format": 1, "device_id": 1, "bad_status": 1}
        assert wait_until(lambda: ingest.stats()["rejected"] == expected and store.clip("synth-00007"), 20), \
            (ingest.stats(), caplog.text)
    finally:
        ingest.stop()
        client.loop_stop()
        client.disconnect()
    for reason in expected:  # one line per reason, however many came
        assert len([r for r in caplog.records if f"({reason})" in r.getMessage()]) == 1, (reason, caplog.text)
    row = store.event("synth-00007")
    assert row["end_ts"] is not None and row["has_clip"]
    assert Path(store.clip("synth-00007")["path"]) == tmp_path / "c" / "kitchen" / "synth-00007.flac"
    assert store.clip("never-seen") is not None  # kept alone: it joins its event if that ever comes
    assert store.clip("big-1") is None and store.clip("noise") is None
    assert store.totals()["events"] == 1 and store.device_ids() == ["kitchen"]
    assert not list((tmp_path / "c").glob("*/.*.tmp"))
    store.close()
