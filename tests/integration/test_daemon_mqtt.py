"""The daemon end to end against real parts: ALSA capture through the file plugin, a real Mosquitto broker
(anonymous, password + ACL, TLS), and MQTT subscribers. Nothing here is faked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
from daemonparts import SILENCE, kitchen_config, segment
from tools.rig.broker import make_certs
from tools.rig.daemon import DaemonProcess, daemon_config_text
from tools.rig.mic import FileMic
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have

pytestmark = pytest.mark.skipif(not have("mosquitto", "mosquitto_passwd", "openssl"),
                                reason="needs Debian's mosquitto and openssl (make test installs them)")


def test_alsa_to_broker_end_to_end(tmp_path, broker, assets, coral_twin, miaow):
    b = broker()
    sub = Subscriber(b.port)
    mic = FileMic(tmp_path / "alsa", np.concatenate([SILENCE, miaow, SILENCE, SILENCE]))
    # a top class must hold longer than the recording takes to go through, at any speed: the one seen first stays
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, b.port, {"source": "alsa", "device": "testmic"},
                         {"scores": True, "scores_top_k": 3, "scores_interval_seconds": 2.0, "top_hold_seconds": 60},
                         device={"board": "pi4-usb-coral"})
    daemon = DaemonProcess(cfg, env=mic.env)
    try:
        assert sub.wait(lambda s: any(e["type"] == "end" for e in s.events()), 60), daemon.log
        monitor = subprocess.run([sys.executable, "-m", "edge", "monitor", "--port", str(b.port), "--json",
                                  "--count", "2", "--timeout", "10"], cwd=ROOT, capture_output=True, text=True)
        assert daemon.terminate() == 0, daemon.log
    finally:
        daemon.kill()
    events = sub.events()
    starts = [e for e in events if e["type"] == "start"]
    ends = [e for e in events if e["type"] == "end"]
    assert starts and ends and starts[0]["label"] == "Cat" and ends[0]["event_id"] == starts[0]["event_id"]
    e = ends[0]
    assert e["schema"] == 1 and e["device_id"] == "kitchen" and e["class_index"] == 76 and e["delegate"] == "cpu"
    assert e["model"] == "yamnet_spectra_in" and 0.5 <= e["peak_score"] <= 1 and e["duration_s"] > 1
    assert e["end_time"] > e["start_time"] and -60 < e["level_dbfs"] <= 0
    # every watched label ends OFF; what goes out before is the state as it is when the network thread sends (this
    # file plugin replays faster than real time, even before the first connection: the retained topic holds the
    # newest state, so the first OFF may already be ON when the broker answers, and an ON and its OFF a few windows
    # later may go out as the OFF alone)
    states = sub.payloads("/state/cat")
    assert states[-1] == b"OFF" and set(states) <= {b"OFF", b"ON"}
    assert sub.payloads("/status")[0] == b"online" and sub.payloads("/status")[-1] == b"offline"
    # what a subscriber that arrives later sees: retained state, status and Home Assistant discovery
    late = Subscriber(b.port)
    assert late.wait(lambda s: s.payloads("homeassistant/sensor/kitchen/top/config"), 5)
    retained = late.retained()
    late.close()
    assert retained["edge-audio/kitchen/state/cat"] == b"OFF"
    assert retained["edge-audio/kitchen/status"] == b"offline"
    config = json.loads(retained["homeassistant/binary_sensor/kitchen/cat/config"])
    assert config["state_topic"] == "edge-audio/kitchen/state/cat" and config["availability_topic"].endswith("status")
    assert "homeassistant/binary_sensor/kitchen/dog/config" in retained
    device = json.loads(retained["homeassistant/sensor/kitchen/top/config"])["device"]
    assert device["model"] == "pi4-usb-coral" and device["sw_version"].endswith(" / yamnet_spectra_in")
    metrics = json.loads(retained["edge-audio/kitchen/metrics"])
    assert metrics["windows"] >= 30 and metrics["delegate"] == "cpu" and "libedgetpu" in metrics["delegate_reason"]
    assert metrics["inference_p50_ms"] > 0 and metrics["queue_depth"] == 0 and metrics["dropped_events"] == 0
    assert metrics["delivered_events"] == 2 and metrics["dropped_messages"] == 0
    assert -90 < metrics["level_dbfs"] < 0  # the level of the windows heard, in dB full scale
    scores = [json.loads(p) for p in sub.payloads("/scores")]
    assert scores and all(len(m["top"]) == 3 for m in scores)
    gaps = np.diff([m["t_start"] for m in scores])
    assert (gaps >= 2.0 - 1e-6).all()  # rate-limited in audio time
    # the top class changed (Cat, Animal...) but the retained top did not follow: none of them held for the hold
    tops = sub.payloads("/top")
    assert len(tops) == 1 and retained["edge-audio/kitchen/top"] == tops[0]
    assert {m["top"][0]["label"].encode() for m in scores} - set(tops)
    level = json.loads(retained["homeassistant/sensor/kitchen/sound_level/config"])
    assert level["state_topic"] == "edge-audio/kitchen/metrics" and level["device_class"] == "sound_pressure"
    assert re.fullmatch(r"\{\{ value_json\.(\w+) \}\}", level["value_template"]).group(1) in metrics
    lines = [json.loads(l) for l in monitor.stdout.splitlines()]
    assert monitor.returncode == 0 and {l["topic"] for l in lines} <= {"edge-audio/kitchen/status",
                                                                       "edge-audio/kitchen/state/cat",
                                                                       "edge-audio/kitchen/state/dog"}
    sub.close()


def test_events_during_a_broker_outage_arrive_in_order_after_it_returns(tmp_path, broker, coral_twin, miaow):
    b = broker(persistence=True)
    # a subscriber whose session the broker keeps across its restart: nothing depends on who reconnects first
    sub = Subscriber(b.port, topics=("edge-audio/kitchen/events",), session="watcher")
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, b.port, {"source": "stdin", "rate_hz": 16000})
    daemon = DaemonProcess(cfg, stdin_pipe=True)
    pipe = daemon.proc.stdin
    try:
        pipe.write(segment(miaow).tobytes())
        pipe.flush()
        assert sub.wait(lambda s: len(s.events()) >= 2, 60), daemon.log
        b.save()
        b.kill()
        for _ in range(3):  # three more cat episodes while the broker is down
            pipe.write(segment(miaow).tobytes())
        pipe.flush()
        assert daemon.wait_log(r"(?s)disconnected.*(start Cat.*){3}", 30), daemon.log
        time.sleep(0.5)
        b.start()
        assert sub.wait(lambda s: len({(e["event_id"], e["type"]) for e in s.events()}) >= 8, 30), daemon.log
        pipe.close()
        assert daemon.proc.wait(15) == 0, daemon.log
    finally:
        daemon.kill()
        sub.close()
    events = sub.events()
    unique = list(dict.fromkeys((e["event_id"], e["type"]) for e in events))  # QoS 1: dedupe by id
    assert len(unique) == 8, events
    kinds = [k for _, k in unique]
    assert kinds == ["start", "end"] * 4  # in order
    starts = [e["start_ts"] for e in events if e["type"] == "start"]
    assert starts == sorted(starts)
    assert "reconnected" in daemon.log or "connected to" in daemon.log.split("disconnected", 1)[1]


def test_frozen_broker_does_not_stop_the_audio_loop(tmp_path, broker, coral_twin, miaow):
    b = broker()
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, b.port, {"source": "stdin"}, metrics_s=1.0)
    daemon = DaemonProcess(cfg, stdin_pipe=True)
    pipe = daemon.proc.stdin
    try:
        assert daemon.wait_log(r"MQTT: connected", 20), daemon.log
        b.pause()
        for _ in range(3):
            pipe.write(segment(miaow).tobytes())
        pipe.flush()
        # all 66 windows of the audio are classified while the broker is frozen, and the events wait in the outbox
        assert daemon.wait_log(r"metrics: (6[6-9]|[7-9]\d) windows, .* queue [1-9]", 30), daemon.log
        b.resume()
        assert daemon.wait_log(r"(?s)queue [1-9].*metrics: \d+ windows, .* queue 0,", 30), daemon.log
        pipe.close()
        assert daemon.proc.wait(15) == 0
    finally:
        daemon.kill()


def test_the_idle_network_thread_sleeps_until_work_or_a_keepalive(tmp_path, broker):
    """No polling: idle for two keepalive intervals (the shortest the config allows) the thread wakes a handful of
    times (for the keepalive), the broker keeps the connection (it drops a client silent for 1.5 intervals), and
    queued work wakes it at once."""
    from edge.config import parse_config
    from edge.sinks.mqtt import MqttSink
    keepalive_s, intervals = 5, 2
    b = broker()
    sub = Subscriber(b.port, topics=("edge-audio/idle/#",))
    cfg = parse_config(daemon_config_text(mqtt={"host": "127.0.0.1", "port": b.port, "keepalive_seconds": keepalive_s,
                                                "homeassistant": False, "spool_file": "none"})).mqtt
    sink = MqttSink(cfg, "idle")
    sink.start()
    try:
        assert sub.wait(lambda s: s.payloads("/status") == [b"online"], 10)
        before = sink.net.wakeups
        time.sleep(intervals * keepalive_s + 0.5)
        idle = sink.net.wakeups - before
        assert sink.connected and sink.reconnects == 0
        # pings and their answers, looks every K/4
        assert idle <= intervals * 2 * 4, f"{idle} wake-ups in {intervals * keepalive_s} s idle"
        sent = time.monotonic()
        sink.set_top("Speech")
        sink.flush()  # the audio loop's "done, going to sleep"
        assert sub.wait(lambda s: s.payloads("/top") == [b"Speech"], 5)
        assert time.monotonic() - sent < 1.0
    finally:
        sink.stop(2.0)
        sub.close()


def test_sigkill_leaves_the_last_will(tmp_path, broker, coral_twin):
    b = broker()
    sub = Subscriber(b.port, topics=("edge-audio/kitchen/status",))
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, b.port, {"source": "stdin"}, {"keepalive_seconds": 5})
    daemon = DaemonProcess(cfg, stdin_pipe=True)
    try:
        assert sub.wait(lambda s: s.payloads("/status") == [b"online"], 20), daemon.log
        daemon.proc.kill()
        assert sub.wait(lambda s: s.payloads("/status")[-1:] == [b"offline"], 10)
    finally:
        daemon.kill()
        sub.close()


def test_wrong_password_is_one_clear_line_and_no_crash_loop(tmp_path, broker, coral_twin):
    b = broker(users={"edge": "right"})
    (tmp_path / "pw").write_text("wrong\n")
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, b.port, {"source": "stdin"},
                         {"username": "edge", "password_file": tmp_path / "pw"})
    daemon = DaemonProcess(cfg, stdin_pipe=True)
    try:
        assert daemon.wait_log(r"refused the connection: (Bad user name or password|Not authorized)", 20), daemon.log
        time.sleep(2.5)  # several retries later: still running, still one line
        assert daemon.proc.poll() is None
        assert len(re.findall("refused the connection", daemon.log)) == 1
        assert "wrong" not in daemon.log  # the password never reaches the log
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    assert "Traceback" not in daemon.log


def test_acl_denial_is_reported(tmp_path, broker, coral_twin, miaow):
    acl = "user edge\ntopic readwrite edge-audio/kitchen/status\ntopic readwrite edge-audio/kitchen/state/#\n" \
          "topic readwrite edge-audio/kitchen/top\ntopic readwrite edge-audio/kitchen/metrics\n" \
          "topic readwrite homeassistant/#\n"
    b = broker(users={"edge": "secret"}, acl=acl)
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, b.port, {"source": "stdin"}, {"username": "edge"})
    daemon = DaemonProcess(cfg, env={"EDGE_AUDIO_MQTT_PASSWORD": "secret"}, stdin_pipe=True)
    try:
        daemon.proc.stdin.write(segment(miaow).tobytes())
        daemon.proc.stdin.close()
        assert daemon.proc.wait(30) == 0
    finally:
        daemon.kill()
    assert re.search(r"broker refused to accept edge-audio/kitchen/events: Not authorized \(check the ACL", daemon.log)
    assert len(re.findall("refused to accept", daemon.log)) == 1


def test_tls_with_password_and_with_an_untrusted_ca(tmp_path, broker, coral_twin, miaow):
    certs = make_certs(tmp_path / "pki")
    other = make_certs(tmp_path / "other-pki", name="other")
    b = broker(users={"edge": "secret"}, tls=certs)
    (tmp_path / "pw").write_text("secret\n")
    sub = Subscriber(b.port, username="edge", password="secret", tls_ca=certs["ca"])
    common = {"username": "edge", "password_file": tmp_path / "pw", "tls": True}
    cfg = kitchen_config(tmp_path / "ok.toml", coral_twin, b.port, {"source": "stdin"},
                         {**common, "ca_file": certs["ca"]})
    daemon = DaemonProcess(cfg, stdin_pipe=True)
    try:
        daemon.proc.stdin.write(segment(miaow).tobytes())
        daemon.proc.stdin.close()
        assert daemon.proc.wait(30) == 0, daemon.log
        assert sub.wait(lambda s: [e["type"] for e in s.events()] == ["start", "end"], 10)
    finally:
        daemon.kill()
        sub.close()
    cfg = kitchen_config(tmp_path / "bad.toml", coral_twin, b.port, {"source": "stdin"},
                         {**common, "ca_file": other["ca"]})
    daemon = DaemonProcess(cfg, stdin_pipe=True)
    try:
        assert daemon.wait_log(r"TLS certificate not trusted .*check mqtt.ca_file", 20), daemon.log
        time.sleep(1.5)
        assert daemon.proc.poll() is None and len(re.findall("not trusted", daemon.log)) == 1
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
