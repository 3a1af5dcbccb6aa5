"""The daemon's life against real parts: a microphone that is missing, stalls or runs at another rate, restarts
with undelivered events, systemd's notify protocol, Home Assistant coming back, SIGTERM with the broker gone."""

from __future__ import annotations

import json
import re
import signal
import time

import numpy as np
import pytest

from daemonparts import SILENCE, kitchen_config, segment
from tools.rig.daemon import DaemonProcess
from tools.rig.mic import FifoMic, FileMic
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have

pytestmark = pytest.mark.skipif(not have("mosquitto", "mosquitto_passwd", "openssl"),
                                reason="needs Debian's mosquitto and openssl (make test installs them)")


def test_a_vanished_microphone_is_retried_not_fatal(tmp_path, coral_twin):
    mic = FifoMic(tmp_path / "alsa")
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, 1, {"source": "alsa", "device": "nosuchmic",
                                                                "reopen_min_seconds": 0.2, "reopen_max_seconds": 0.4},
                         {"enabled": False})
    daemon = DaemonProcess(cfg, env=mic.env)
    try:
        assert daemon.wait_log(r"cannot open ALSA 'nosuchmic'.*retrying", 20), daemon.log
        time.sleep(1.5)
        assert daemon.proc.poll() is None
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


def test_the_spool_carries_events_across_a_restart(tmp_path, broker, coral_twin, miaow):
    b = broker()
    b.kill()  # the broker is down for the whole first run
    spool = tmp_path / "state" / "spool.db"
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, b.port, {"source": "stdin"}, {"spool_file": spool})
    first = DaemonProcess(cfg, stdin_pipe=True)
    try:
        first.proc.stdin.write(segment(miaow).tobytes())
        first.proc.stdin.close()
        assert first.proc.wait(30) == 0, first.log
    finally:
        first.kill()
    import sqlite3
    with sqlite3.connect(spool) as db:
        kept = [json.loads(p) for (p,) in db.execute("SELECT payload FROM outbox ORDER BY seq")]
    assert [k["type"] for k in kept] == ["start", "end"]
    assert "kept in the spool" in first.log
    b.start()
    sub = Subscriber(b.port, topics=("edge-audio/kitchen/events",))
    second = DaemonProcess(cfg, stdin_pipe=True)
    try:
        assert sub.wait(lambda s: len(s.events()) >= 2, 20), second.log
        second.proc.stdin.close()
        assert second.proc.wait(15) == 0
    finally:
        second.kill()
        sub.close()
    assert [e["event_id"] for e in sub.events()] == [k["event_id"] for k in kept]
    with sqlite3.connect(spool) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0  # delivered: marked in the spool


def test_systemd_notify_ready_watchdog_stopping(tmp_path, coral_twin):
    import socket
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, 1, {"source": "stdin"}, {"enabled": False})
    daemon = DaemonProcess(cfg, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}, stdin_pipe=True)
    received = []
    try:
        while not any("WATCHDOG=1" in m for m in received):
            received.append(sock.recv(4096).decode())
        daemon.proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in received):
            received.append(sock.recv(4096).decode())
        assert daemon.proc.wait(5) == 0
    finally:
        daemon.kill()
        sock.close()
    assert received[0].startswith("READY=1")


def test_alsa_device_at_48k_stereo_s32_is_resampled(tmp_path, coral_twin, miaow):
    from edge.core.resample import Resampler
    mono = np.concatenate([SILENCE, miaow, SILENCE, SILENCE]).astype(np.float32)
    r = Resampler(16000, 48000, max_chunk=mono.size)
    up = np.concatenate([r.process(mono).copy(), r.flush()])
    stereo = np.repeat(np.clip(np.rint(up), -32768, 32767).astype(np.int32)[:, None], 2, axis=1) << 16
    mic = FileMic(tmp_path / "alsa", np.zeros(0, np.int16))
    stereo.astype("<i4").tofile(mic.raw)
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, 1, {"source": "alsa", "device": "testmic",
                                                                "rate_hz": 48000, "channels": 2, "format": "S32_LE"},
                         {"enabled": False})
    daemon = DaemonProcess(cfg, env=mic.env)
    try:
        assert daemon.wait_log(r"end Cat", 60), daemon.log
        assert "at 48000 Hz, 2 channel(s)" in daemon.log
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


def test_a_stalled_device_is_detected_and_reopened(tmp_path, coral_twin, miaow):
    mic = FifoMic(tmp_path / "alsa")
    mic.open_writer()
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, 1, {"source": "alsa", "device": "testmic",
                                                                "stall_seconds": 1.5}, {"enabled": False})
    daemon = DaemonProcess(cfg, env=mic.env)
    try:
        mic.feed(miaow[:16000 * 2])  # two seconds, then the device goes quiet without closing
        assert daemon.wait_log(r"no audio from ALSA 'testmic' for 1.5 s: the device stalled; reopening it", 30), \
            daemon.log
        assert daemon.wait_log(r"(?s)stalled.*capturing from ALSA 'testmic'", 10)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        mic.close()


def test_discovery_is_announced_again_when_home_assistant_comes_online(tmp_path, broker, coral_twin):
    b = broker()
    sub = Subscriber(b.port, topics=("homeassistant/+/kitchen/+/config",))
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, b.port, {"source": "stdin"})
    daemon = DaemonProcess(cfg, stdin_pipe=True)
    try:
        # cat, dog, top class, sound level, sound event
        assert sub.wait(lambda s: len(s.messages) == 5, 20), daemon.log
        sub.client.publish("homeassistant/status", "online", qos=1)
        assert sub.wait(lambda s: len(s.messages) == 10, 10), daemon.log
        assert {m.topic for m in sub.messages[5:]} == {m.topic for m in sub.messages[:5]}
        configs = {m.topic: json.loads(m.payload) for m in sub.messages[:5]}
        assert all(c["qos"] == 1 and c["origin"]["name"] == "edge-audio" for c in configs.values())
        assert configs["homeassistant/event/kitchen/sound/config"]["event_types"] == ["start", "end"]
        started = time.monotonic()
        assert daemon.terminate() == 0
        assert time.monotonic() - started < 5
    finally:
        daemon.kill()
        sub.close()


def test_sigterm_with_the_broker_gone_still_exits_within_5_s(tmp_path, broker, coral_twin, miaow):
    b = broker()
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, b.port, {"source": "stdin"})
    daemon = DaemonProcess(cfg, stdin_pipe=True)
    try:
        assert daemon.wait_log(r"MQTT: connected", 20), daemon.log
        b.kill()
        daemon.proc.stdin.write(segment(miaow)[:16000 * 5].tobytes())  # a cat event waits in the outbox
        daemon.proc.stdin.flush()
        assert daemon.wait_log(r"start Cat", 20), daemon.log
        started = time.monotonic()
        assert daemon.terminate(timeout_s=5) == 0
        elapsed = time.monotonic() - started
    finally:
        daemon.kill()
    assert elapsed < 5, elapsed
    assert re.search(r"event\(s\) not delivered at shutdown: kept in the spool .*spool.db", daemon.log), daemon.log


def test_a_label_removed_from_allow_disappears_from_home_assistant(tmp_path, broker, coral_twin):
    b = broker()
    dog = "homeassistant/binary_sensor/kitchen/dog/config"
    for run, allow in enumerate((["Cat", "Dog"], ["Cat"])):
        cfg = kitchen_config(tmp_path / f"cfg{run}.toml", coral_twin, b.port, {"source": "stdin"},
                             detector={"allow": allow})
        daemon = DaemonProcess(cfg, stdin_pipe=True)
        try:
            assert daemon.wait_log(r"MQTT: connected", 20), daemon.log
            time.sleep(1.0)
            assert daemon.terminate() == 0
        finally:
            daemon.kill()
        if run == 1:
            assert "removing dog (no longer in detector.allow)" in daemon.log, daemon.log
    sub = Subscriber(b.port, topics=("homeassistant/binary_sensor/kitchen/+/config", "edge-audio/kitchen/state/+"))
    time.sleep(1.0)
    sub.close()
    retained = {t for t, p in sub.retained().items() if p}
    assert dog not in retained and "homeassistant/binary_sensor/kitchen/cat/config" in retained
    assert "edge-audio/kitchen/state/dog" not in retained


def test_sigterms_until_the_daemon_is_gone_still_exit_0(tmp_path, coral_twin):
    """Its input ends while SIGTERMs keep coming (a supervisor's stop racing the end of a file, or the test rig's):
    every one lands in the loop, in its shutdown or in the interpreter's teardown, and the exit stays 0, never
    "killed by SIGTERM"."""
    cfg = kitchen_config(tmp_path / "cfg.toml", coral_twin, 1, {"source": "stdin"}, {"enabled": False})
    codes = []
    for _ in range(5):
        daemon = DaemonProcess(cfg, stdin_pipe=True)
        assert daemon.wait_log(r"capturing from stdin", 60), daemon.log
        daemon.feed(SILENCE[:16000])
        daemon.proc.stdin.close()
        while daemon.alive():
            daemon.proc.send_signal(signal.SIGTERM)
            time.sleep(0.0002)
        codes.append(daemon.proc.wait())
        daemon.kill()
    assert codes == [0] * 5, codes
