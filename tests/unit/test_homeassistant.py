"""Home Assistant discovery payloads: the device names the board profile as its model and the kit and model bundle
as its software version; the sound level sensor reads the level the metrics payload carries, averaged the way a
sound level is (by power) over the windows since the previous metrics message. The real broker and daemon:
tests/integration/test_daemon_mqtt.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge import __version__
from edge.app.metrics import LoopMetrics
from edge.config import parse_config
from edge.core.detector import level_dbfs
from edge.sinks import homeassistant
from edge.sinks.topics import Topics
from edge.firmware import profile_names, profile_text


def _configs(model: str, board: str) -> dict[str, dict]:
    messages = homeassistant.discovery_messages(Topics("edge-audio", "kitchen"), "homeassistant", ["Cat", "Dog"],
                                                model, board)
    return {topic: json.loads(payload) for topic, payload in messages}


def test_the_device_model_is_the_board_profile_and_the_software_version_names_the_bundle():
    configs = _configs("yamnet-coral", "pi4-usb-coral")
    devices = [c["device"] for c in configs.values()]
    assert all(d == devices[0] for d in devices)  # one device for every entity
    assert devices[0]["model"] == "pi4-usb-coral"
    assert devices[0]["sw_version"] == f"edge-audio {__version__} / yamnet-coral"


def test_a_config_without_a_board_still_names_a_device_model():
    device = next(iter(_configs("", "").values()))["device"]
    assert device["model"] == homeassistant.UNKNOWN_BOARD and device["sw_version"] == f"edge-audio {__version__}"


@pytest.mark.parametrize("name", profile_names())
def test_every_shipped_profile_names_its_board(name):
    cfg = parse_config(profile_text(name), name)
    assert cfg.device.board == name


def test_the_sound_level_sensor_reads_the_metrics_payload():
    config = _configs("m", "b")["homeassistant/sensor/kitchen/sound_level/config"]
    assert config["state_topic"] == "edge-audio/kitchen/metrics"
    assert config["device_class"] == "sound_pressure" and config["unit_of_measurement"] in ("dB", "dBA")
    assert config["state_class"] == "measurement"
    assert config["value_template"] == "{{ value_json.level_dbfs }}"  # the daemon's metrics carry it


def _windows() -> list[np.ndarray]:
    """Three windows of a room: a loud tone, quiet noise, digital silence."""
    t = np.arange(15600) / 16000
    rng = np.random.default_rng(7)
    return [(0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
            (0.001 * rng.standard_normal(t.size)).astype(np.float32), np.zeros(t.size, np.float32)]


def test_the_level_is_the_power_average_of_the_windows_since_the_last_message():
    stats = LoopMetrics()
    assert stats.level_dbfs() is None  # nothing heard yet: the sensor reads "unknown"
    windows = _windows()
    for w in windows:
        stats.heard(level_dbfs(w))
    # the level of all the audio heard, as if it were one long window
    assert stats.level_dbfs() == pytest.approx(level_dbfs(np.concatenate(windows)), abs=0.05)
    assert stats.level_dbfs() is None  # each message covers the windows since the one before
    stats.heard(level_dbfs(windows[1]))
    assert stats.level_dbfs() == pytest.approx(level_dbfs(windows[1]), abs=0.05)
