"""Devices and labels named in Chinese, Cyrillic and Greek on a real Mosquitto: each gets Home Assistant entities of
its own, and no device's start removes another's. The ids themselves: tests/unit/test_slugs.py."""

from __future__ import annotations

import json
import time

import pytest

from daemonparts import kitchen_config
from edge.sinks.topics import Topics
from tools.rig.daemon import DaemonProcess, daemon_config_text
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have

pytestmark = pytest.mark.skipif(not have("mosquitto", "mosquitto_passwd", "openssl"),
                                reason="needs Debian's mosquitto and openssl (make test installs them)")

DEVICES = {"厨房": ["猫", "狗", "说话"], "客厅": ["Кошка", "Собака"], "Кухня": ["Γάτα", "Σκύλος"]}


def _sink(port: int, device: str, watched: list[str]):
    from edge.config import parse_config
    from edge.sinks.mqtt import MqttSink
    cfg = parse_config(daemon_config_text(device={"id": device}, mqtt={
        "host": "127.0.0.1", "port": port, "spool_file": "none", "reconnect_min_seconds": 0.2})).mqtt
    sink = MqttSink(cfg, device, watched=watched)
    sink.start()
    return sink


def _announced(sub: Subscriber, device: str, count: int) -> bool:
    """`count` configs naming `device` have arrived."""
    configs = [json.loads(m.payload) for m in sub.received() if m.topic.startswith("homeassistant/") and m.payload]
    return sum(c["device"]["identifiers"] == [f"edge-audio-{device}"] for c in configs) >= count


def _retained(port: int) -> dict[str, bytes]:
    """What Home Assistant (a late subscriber) sees: every retained discovery config and state."""
    late = Subscriber(port, topics=("homeassistant/#", "edge-audio/+/state/+"))
    time.sleep(1.0)
    late.close()
    return {t: p for t, p in late.retained().items() if p}


def test_devices_and_labels_not_in_latin_script_each_keep_their_entities(broker):
    b = broker()
    live = Subscriber(b.port, topics=("homeassistant/#",))
    sinks = {}
    try:
        for device, watched in DEVICES.items():  # one after another, each seeing the others' retained configs
            sinks[device] = _sink(b.port, device, watched)
            assert live.wait(lambda s: _announced(s, device, len(watched) + 3), 10), device
        for device in ("客厅", "Кухня"):
            sinks.pop(device).stop()  # delivered: whatever it was to clear has been cleared
        retained = _retained(b.port)
    finally:
        for sink in sinks.values():
            sink.stop()
        live.close()
    configs = {t: json.loads(p) for t, p in retained.items() if t.startswith("homeassistant/")}
    assert len(configs) == sum(len(w) + 3 for w in DEVICES.values()), sorted(configs)  # 16: none lost
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    sensors = [c for t, c in configs.items() if "/binary_sensor/" in t]
    assert sorted(c["name"] for c in sensors) == sorted(sum(DEVICES.values(), []))  # the names as they are
    states = [c["state_topic"] for c in sensors]
    assert len(set(states)) == len(states) == 7
    assert all(retained.get(s) == b"OFF" for s in states)  # each sensor's own state topic, all at OFF
    assert all(all(t.split("/")) for t in list(configs) + states)  # no empty level


def test_a_device_removes_its_own_labels_only(broker):
    """A label taken out of one device's watch list goes, with its state; the other devices' stay."""
    b = broker()
    live = Subscriber(b.port, topics=("homeassistant/#",))
    try:
        for device, watched in DEVICES.items():
            sink = _sink(b.port, device, watched)
            assert live.wait(lambda s: _announced(s, device, len(watched) + 3), 10), device
            sink.stop()
        sink = _sink(b.port, "厨房", ["猫"])
        assert live.wait(lambda s: len([m for m in s.received() if not m.payload]) >= 2, 10)  # 狗 and 说话
        sink.stop()
        cleared = {m.topic for m in live.received() if not m.payload}
    finally:
        live.close()
    retained = _retained(b.port)
    names = {json.loads(p)["name"] for t, p in retained.items() if "/binary_sensor/" in t}
    assert names == {"猫", "Кошка", "Собака", "Γάτα", "Σκύλος"}
    assert len(cleared) == 2 and not cleared & set(retained)
    assert [t for t in retained if t.startswith("edge-audio/厨房/state/")] == [Topics("edge-audio", "厨房").state("猫")]


def test_two_daemons_named_in_chinese_keep_each_other_s_entities(tmp_path, broker, coral_twin):
    """The second daemon's start used to clear the first one's Dog (their node ids were both empty)."""
    b = broker()
    live = Subscriber(b.port, topics=("homeassistant/#",))
    daemons = []
    try:
        for device, allow in (("厨房", ["Cat", "Dog"]), ("客厅", ["Cat"])):
            cfg = kitchen_config(tmp_path / f"{len(daemons)}.toml", coral_twin, b.port, {"source": "stdin"},
                                 {"spool_file": str(tmp_path / f"{len(daemons)}.db")}, detector={"allow": allow},
                                 device={"id": device})
            daemons.append(DaemonProcess(cfg, stdin_pipe=True))
            assert live.wait(lambda s: _announced(s, device, len(allow) + 3), 20), daemons[-1].log
        assert daemons[1].terminate() == 0, daemons[1].log  # delivered what it had to, then offline
        retained = _retained(b.port)
        assert daemons[0].alive()
    finally:
        for daemon in daemons:
            daemon.kill()
        live.close()
    owners = {}
    for topic, payload in retained.items():
        if topic.startswith("homeassistant/"):
            config = json.loads(payload)
            owners.setdefault(config["device"]["name"], set()).add(config["name"])
    assert owners == {"edge-audio 厨房": {"Cat", "Dog", "Top sound", "Sound level", "Sound event"},
                      "edge-audio 客厅": {"Cat", "Top sound", "Sound level", "Sound event"}}
    assert "removing" not in daemons[1].log, daemons[1].log
