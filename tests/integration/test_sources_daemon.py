"""One daemon, three sources, real parts only: an ALSA microphone (the alsa-lib file plugin reading a FIFO fed at
real time), a WAV replayed at real time and a network stream (ffmpeg serving a recording over HTTP on loopback,
tools/rig/streamserver.py), all on one classifier (CPU delegate), publishing to a real Mosquitto. Each source's
events on its own topics with the labels of what it played, its retained status, a Home Assistant device per
source; the stream server killed mid-stream and started again (the others lose nothing, the stream's status and
metrics say so, it comes back on its own, the gap is counted); config errors of one source (exit 78, one line);
and the stream's password shown nowhere (log, metrics, MQTT, --show-config).

Run with -s for the figures: the stream's return (server back -> online, -> first event) and the other sources'
events during the outage against a run without it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from daemonparts import SILENCE
from edge.core.wavfile import read_wav, write_wav
from edge.sinks import homeassistant
from edge.sinks.topics import Topics
from tools.rig.daemon import DaemonProcess, write_daemon_config
from tools.rig.mic import FifoMic
from tools.rig.mqtt import Subscriber
from tools.rig.streamserver import StreamServer

pytestmark = pytest.mark.usefixtures("needs_ffmpeg")

SECRET = "secret"
PI = Topics("edge-audio", "pi")
PIG = "devset/clips/esc50_pig_4-132383-B-2.wav"  # Pig >= 0.5 in every window
ALARM = "devset/clips/esc50_clock_alarm_4-172366-A-37.wav"  # Alarm clock >= 0.96 in every window
MIC_CYCLES, BARN_CYCLES = 3, 4  # miaow + 4 s silence (11 s) on the microphone; pig + 4 s silence (9 s) in the barn
WATCHED = {"mic": ["Cat"], "barn": ["Pig"], "cam": ["Alarm clock"]}
EXPECTED = {"mic": [("start", "Cat"), ("end", "Cat")] * MIC_CYCLES,
            "barn": [("start", "Pig"), ("end", "Pig")] * BARN_CYCLES}


class Feeder:
    """Writes PCM into a FifoMic at real time from a thread of its own, one ALSA period at a time once its time has
    passed (as a sound card hands over a period once it is recorded), then silence until stop(): the microphone
    goes on delivering, as a real one would."""

    BLOCK = 1024

    def __init__(self, mic: FifoMic, pcm: np.ndarray):
        self.mic, self.pcm = mic, pcm
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Feed from now on (the microphone's writer is open: its reader's open() does not wait for one)."""
        self._thread.start()

    def _run(self) -> None:
        t0, i = time.monotonic(), 0
        quiet = np.zeros(self.BLOCK, np.int16)
        while not self._stop.wait(max(0.0, t0 + (i + 1) * self.BLOCK / 16000 - time.monotonic())):
            block = self.pcm[i * self.BLOCK:(i + 1) * self.BLOCK]
            self.mic.write(block if block.size == self.BLOCK else quiet)
            i += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.mic.close()


def _clip(assets: Path, name: str) -> np.ndarray:
    return read_wav(assets / name).samples[:, 0].copy()


def _repeat(sound: np.ndarray, times: int) -> np.ndarray:
    return np.concatenate([sound, SILENCE] * times)


def _config(path: Path, model, port: int, sources: list[dict]) -> Path:
    return write_daemon_config(
        path, device={"id": "pi"}, audio={"stall_seconds": 5},
        model={"path": model, "delegate": "cpu"},
        detector={"threshold": 0.5, "hold_seconds": 1.0},
        mqtt={"host": "127.0.0.1", "port": port, "reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1.0},
        metrics={"interval_seconds": 1}, sources=sources)


def _sources(mic_device: str, barn_wav: Path, cam_url: str) -> list[dict]:
    return [{"id": "mic", "source": "alsa", "device": mic_device, "detector": {"allow": WATCHED["mic"]}},
            {"id": "barn", "source": "wav", "file": barn_wav, "realtime": True,
             "detector": {"allow": WATCHED["barn"]}},
            {"id": "cam", "source": "url", "url": cam_url, "reopen_min_seconds": 0.5, "reopen_max_seconds": 2.0,
             "detector": {"allow": WATCHED["cam"]}}]


class Rig:
    """The broker, a subscriber to everything, the microphone and its feeder, the WAV, the stream server and the
    daemon that listens to all three."""

    def __init__(self, tmp_path: Path, broker, assets: Path, model, miaow: np.ndarray):
        self.broker = broker()
        self.sub = Subscriber(self.broker.port, topics=("edge-audio/#", "homeassistant/#"))
        self.mic = FifoMic(tmp_path / "alsa")
        self.feeder = Feeder(self.mic, _repeat(miaow, MIC_CYCLES))
        barn = tmp_path / "barn.wav"
        write_wav(barn, _repeat(_clip(assets, PIG), BARN_CYCLES), 16000)
        cam = tmp_path / "cam.wav"
        write_wav(cam, _repeat(_clip(assets, ALARM), 1), 16000)
        self.server = StreamServer(cam, realtime=True, loop=True).start()
        self.url = self.server.url.replace("http://", f"http://user:{SECRET}@", 1)
        self.config = _config(tmp_path / "cfg.toml", model, self.broker.port,
                              _sources("testmic", barn, self.url))
        self.mic.open_writer()
        self.daemon = DaemonProcess(self.config, env=self.mic.env)
        self.started = time.monotonic()
        assert self.daemon.wait_log(r"capturing from ALSA 'testmic'", 60), self.daemon.log
        self.feeder.start()

    def close(self) -> None:
        self.daemon.kill()
        self.feeder.stop()
        self.server.stop()
        self.sub.close()

    # -- what arrived -------------------------------------------------------------------------------------------
    def events(self, source: str, since: float = 0.0, until: float = float("inf")) -> list[dict]:
        """The source's events (deduplicated: QoS 1) that arrived in [since, until), on its own topic."""
        seen, out = set(), []
        for m in self.sub.received():
            if m.topic == PI.of(source).events and since <= m.at < until:
                e = json.loads(m.payload)
                if (e["event_id"], e["type"]) not in seen:
                    seen.add((e["event_id"], e["type"]))
                    out.append(e)
        return out

    def pairs(self, source: str) -> list[tuple[str, str]]:
        return [(e["type"], e["label"]) for e in self.events(source)]

    def status(self, source: str) -> list[tuple[float, bytes]]:
        return [(m.at, m.payload) for m in self.sub.received() if m.topic == PI.of(source).status]

    def metrics(self, source: str) -> dict:
        got = self.sub.payloads(PI.of(source).metrics)
        return json.loads(got[-1]) if got else {}

    def wait(self, predicate, timeout_s: float = 60.0, what: str = "") -> None:
        assert self.sub.wait(lambda s: predicate(), timeout_s), f"{what}: {self.daemon.log_tail(12)}"

    def done(self) -> bool:
        """Every microphone and barn event of the whole recording arrived."""
        return all(len(self.pairs(s)) >= len(EXPECTED[s]) for s in EXPECTED)

    def assert_nothing_secret(self) -> None:
        assert SECRET not in self.daemon.log, [l for l in self.daemon.log.splitlines() if SECRET in l]
        leaked = [m.topic for m in self.sub.received() if SECRET in m.topic or SECRET.encode() in m.payload]
        assert not leaked, leaked
        assert "http://***@127.0.0.1" in self.daemon.log  # the source is named, its login blanked


@pytest.fixture
def rig(tmp_path, broker, assets, coral_twin, miaow):
    r = Rig(tmp_path, broker, assets, coral_twin, miaow)
    yield r
    r.close()


def _online(rig: Rig, source: str) -> bool:
    got = rig.status(source)
    return bool(got) and got[-1][1] == b"online"


def _check_events(rig: Rig) -> None:
    """Each source's events on its own topic, carrying its id, with the labels of what it played; the
    microphone's and the barn's complete (one start and one end per sound they played, in order)."""
    for source in WATCHED:
        events = rig.events(source)
        assert events and all(e["source"] == source for e in events), (source, events)
        assert {e["label"] for e in events} == set(WATCHED[source]), (source, events)
    for source, expected in EXPECTED.items():
        assert rig.pairs(source) == expected, (source, rig.pairs(source))
    mine = {PI.of(s).events for s in WATCHED}
    assert not [m.topic for m in rig.sub.received() if m.topic.endswith("/events") and m.topic not in mine]


def _check_discovery(rig: Rig) -> None:
    """A Home Assistant device per source, through the daemon's device, available on both statuses."""
    configs = {m.topic: json.loads(m.payload) for m in rig.sub.received()
               if m.topic.startswith("homeassistant/") and m.payload}
    expected = {t: json.loads(p) for t, p in homeassistant.announcements(PI, "homeassistant", WATCHED,
                                                                          "yamnet_spectra_in")}
    assert configs == expected
    devices = {c["device"]["name"]: c["device"] for c in configs.values()}
    assert sorted(devices) == ["edge-audio pi", "edge-audio pi barn", "edge-audio pi cam", "edge-audio pi mic"]
    for source in WATCHED:
        assert devices[f"edge-audio pi {source}"]["via_device"] == devices["edge-audio pi"]["identifiers"][0]
        slug = WATCHED[source][0].lower().replace(" ", "_")
        sensor = configs[f"homeassistant/binary_sensor/pi__{source}/{slug}/config"]
        assert sensor["state_topic"] == PI.of(source).state(WATCHED[source][0])
        assert [a["topic"] for a in sensor["availability"]] == [PI.status, PI.of(source).status]


def test_three_sources_each_publish_on_their_own_topics(rig):
    rig.wait(lambda: all(_online(rig, s) for s in WATCHED), 60, "every source online")
    rig.wait(lambda: rig.done() and any(e["type"] == "end" for e in rig.events("cam")), 120, "every event")
    late = Subscriber(rig.broker.port, topics=("edge-audio/#",))
    try:
        assert late.wait(lambda s: PI.of("cam").status in s.retained(), 5)
        held = late.retained()
    finally:
        late.close()
    assert [held[PI.of(s).status] for s in WATCHED] == [b"online"] * 3 and held[PI.status] == b"online"
    assert held[PI.of("mic").state("Cat")] == b"OFF" and held[PI.of("barn").state("Pig")] == b"OFF"
    parts = rig.metrics("")["sources"]  # the device's metrics: every source in its "sources" map
    assert sorted(parts) == sorted(WATCHED) and all(p["online"] and not p["problem"] for p in parts.values())
    assert all(p["missed_windows"] == 0 and p["gaps"] == 0 for p in parts.values()), parts
    wall = time.monotonic() - rig.started
    assert rig.daemon.terminate() == 0, rig.daemon.log
    _check_events(rig)
    _check_discovery(rig)
    rig.assert_nothing_secret()
    others = sum(len(rig.events(s)) for s in EXPECTED)
    print(f"\n[no outage] {others} microphone+barn events in {wall:.1f} s ({others / wall:.2f}/s); "
          f"cam {len(rig.events('cam'))} events; latency p50 ms " +
          ", ".join(f"{s} {p['latency_p50_ms']}" for s, p in parts.items()))


def _cam_back(rig: Rig, back: float) -> bool:
    """The stream delivers again after the server's return: online, an event, metrics that count the gap."""
    m = rig.metrics("cam")
    return any(at >= back and p == b"online" for at, p in rig.status("cam")) and bool(rig.events("cam", back)) \
        and m.get("online") is True and m.get("gaps", 0) >= 1 and m.get("gap_seconds", 0) > 0


def _serve_again(rig: Rig) -> bool:
    """The server serves one client a run (ffmpeg's -listen 1): a reader that connected and went (the daemon's
    ffmpeg started just as the server came back, then replaced) ends it. Start it again, as a camera would be
    there again; never True (the wait goes on)."""
    if not rig.server.alive:
        rig.server.start()
    return False


def test_a_lost_stream_costs_the_other_sources_nothing_and_comes_back_on_its_own(rig):
    rig.wait(lambda: all(_online(rig, s) for s in WATCHED), 60, "every source online")
    rig.wait(lambda: any(e["type"] == "end" for e in rig.events("cam")), 60, "the stream's first event")
    killed = time.monotonic()
    rig.server.kill()  # mid-stream: the next round of the recording was playing
    rig.wait(lambda: rig.status("cam")[-1][1] == b"offline", 30, "the stream offline")
    rig.wait(lambda: rig.metrics("cam").get("online") is False, 10, "the stream's metrics")
    down = rig.metrics("cam")
    device = rig.metrics("")["sources"]
    # the outage lasts until the microphone and the barn have each been heard without the stream
    rig.wait(lambda: all(rig.events(s, killed) for s in EXPECTED) and time.monotonic() - killed > 6, 60,
             "the others' events during the outage")
    rig.server.start()
    back = time.monotonic()
    rig.wait(lambda: _cam_back(rig, back) or _serve_again(rig), 60, "the stream back")
    rig.wait(rig.done, 120, "every microphone and barn event")
    after = rig.metrics("cam")
    others = {s: rig.metrics(s) for s in EXPECTED}
    assert rig.daemon.terminate() == 0, rig.daemon.log
    assert down["problem"] and "stream http://***@127.0.0.1" in down["problem"], down
    assert device["cam"]["online"] is False and "stream http://***@127.0.0.1" in device["cam"]["problem"], device
    assert all(device[s]["online"] for s in EXPECTED), device
    assert after["gaps"] >= 1 and after["gap_seconds"] > 0 and not after["problem"], after
    assert all(m["gaps"] == 0 and m["missed_windows"] == 0 for m in others.values()), others
    cam_status = [p for at, p in rig.status("cam") if at >= killed]
    assert cam_status[:2] == [b"offline", b"online"], cam_status
    _check_events(rig)  # the microphone's and the barn's: every one of them, as without the outage
    rig.assert_nothing_secret()
    assert "audio again after" in rig.daemon.log
    online_s = next(at for at, p in rig.status("cam") if at >= back and p == b"online") - back
    event_s = rig.events("cam", back)[0]
    first = next(m.at for m in rig.sub.received() if m.topic == PI.of("cam").events and m.at >= back)
    during = {s: len(rig.events(s, killed, back)) for s in EXPECTED}
    print(f"\n[outage] server down {back - killed:.1f} s: microphone+barn events during it {during} "
          f"({sum(during.values()) / (back - killed):.2f}/s), in all {sum(len(rig.events(s)) for s in EXPECTED)} "
          f"(expected {sum(len(v) for v in EXPECTED.values())}); stream back: online after {online_s:.2f} s, first "
          f"event ({event_s['type']} {event_s['label']}) after {first - back:.2f} s; cam gaps {after['gaps']}, "
          f"gap_seconds {after['gap_seconds']}; problem: {down['problem']}")


CONFIG_ERRORS = {
    "a bad url scheme": ({"id": "cam2", "source": "url", "url": f"ftp://user:{SECRET}@127.0.0.1:9/a"},
                         ["sources.cam2.url"]),
    "an unknown key": ({"id": "mic1", "source": "alsa", "foo": 1}, ["sources.mic1.foo"]),
    "a wav source without file": ({"id": "barn2", "source": "wav"}, ["sources.barn2.file"]),
    "a missing ffmpeg": ({"id": "cam3", "source": "url", "url": f"http://user:{SECRET}@127.0.0.1:9/a",
                          "ffmpeg": "/nonexistent/ffmpeg"}, ["sources.cam3", "/nonexistent/ffmpeg"]),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_a_config_error_in_one_source_stops_the_daemon_at_start(tmp_path, coral_twin, case):
    bad, needles = CONFIG_ERRORS[case]
    good = {"id": "kitchen", "source": "stdin"}
    cfg = _config(tmp_path / "cfg.toml", coral_twin, 1, [good, bad])
    r = run_cli("run", "--config", cfg, timeout=120)
    line = assert_one_line_error(r, 78, *needles)
    assert SECRET not in r.err + r.out, line


def test_show_config_never_shows_the_password(tmp_path, coral_twin):
    url = f"rtsp://user:{SECRET}@127.0.0.1:9/stream1"
    cfg = _config(tmp_path / "cfg.toml", coral_twin, 1, [{"id": "kitchen", "source": "stdin"},
                                                         {"id": "porch", "source": "url", "url": url}])
    r = run_cli("run", "--config", cfg, "--show-config", timeout=120)
    assert r.code == 0, r.err
    assert SECRET not in r.out + r.err
    assert "source porch: stream rtsp://***@127.0.0.1:9/stream1" in r.out, r.out
