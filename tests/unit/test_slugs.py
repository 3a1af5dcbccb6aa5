"""Label and device ids in topics and Home Assistant (edge/sinks/topics.py: slug): the ids of ASCII names never
change (existing entities keep theirs), names in other scripts get ids of their own, and a device's discovery
configs, state topics and stale-config cleanup stay in its own node. The real broker:
tests/integration/test_homeassistant_devices.py."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re

import pytest
from paho.mqtt.client import topic_matches_sub

from edge.sinks import homeassistant
from edge.sinks.topics import Topics, slug

# ids that installed devices already have: they must never change
LATIN = {"Dog": "dog", "Cat": "cat", "Speech": "speech", "Baby cry, infant cry": "baby_cry_infant_cry",
         "Domestic animals, pets": "domestic_animals_pets", "Smoke detector, smoke alarm": "smoke_detector_smoke_alarm",
         "Tick-tock": "tick_tock", "Speech synthesizer": "speech_synthesizer", "Glass": "glass", "hen": "hen",
         "kitchen": "kitchen", "Kitchen": "kitchen", "pi-kitchen": "pi_kitchen", "barn_2": "barn_2",
         "Living Room 2": "living_room_2", "raspberrypi": "raspberrypi", "edge.audio.01": "edge_audio_01"}

LABELS = ["猫", "狗", "说话", "Кошка", "Собака", "Γάτα", "Σκύλος"]
DEVICES = {"厨房": ["猫", "狗", "说话"], "客厅": ["Кошка", "Собака"], "Кухня": ["Γάτα", "Σκύλος"]}
ID = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")  # one topic level, no wildcard, never empty


def _old_rule(name: str) -> str:
    """The ids every earlier release gave."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@pytest.mark.parametrize("name, expected", sorted(LATIN.items()))
def test_the_ids_of_latin_names_do_not_change(name, expected):
    assert slug(name) == expected


def test_every_yamnet_label_keeps_the_id_it_always_had(class_map):
    names = [row[2] for row in list(csv.reader(class_map.read_text().splitlines()))[1:]]
    assert len(names) == 521
    assert [slug(n) for n in names] == [_old_rule(n) for n in names]
    assert len({slug(n) for n in names}) == len(names)


def test_names_in_other_scripts_get_distinct_stable_ids():
    ids = [slug(n) for n in LABELS + list(DEVICES)]
    assert len(set(ids)) == len(ids)
    for name, got in zip(LABELS + list(DEVICES), ids):
        assert ID.match(got), (name, got)
        assert got == hashlib.sha256(name.encode()).hexdigest()[:8]  # nothing in ASCII: the hash alone
        assert slug(got) == got  # an id given back (a stale config's object id) names the same topic


def test_accented_latin_keeps_its_letters_and_gains_a_hash():
    # the documented examples (docs/daemon.md, Home Assistant)
    assert slug("猫") == "a810bf84"
    assert slug("Café") == "cafe_73473dcc" and slug("Cafe") == "cafe"
    assert slug("Ｄｏｇ") != slug("Dog") and slug("Ｄｏｇ").startswith("dog_")
    # ASCII with nothing left is no longer an empty level either
    assert slug("!!!") != slug("???") and all(ID.match(slug(n)) for n in ("!!!", "???", ""))


def _discovery(device: str, watched: list[str]) -> dict[str, dict]:
    messages = homeassistant.discovery_messages(Topics("edge-audio", device), "homeassistant", watched, "m", "b")
    return {topic: json.loads(payload) for topic, payload in messages}


def test_devices_and_labels_in_other_scripts_are_distinct_entities():
    configs = {t: c for device, watched in DEVICES.items() for t, c in _discovery(device, watched).items()}
    assert len(configs) == sum(len(w) + 3 for w in DEVICES.values())  # no two share a config topic
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    states = [c["state_topic"] for t, c in configs.items() if "/binary_sensor/" in t]
    assert len(set(states)) == len(states) == 7
    for topic in list(configs) + states:
        levels = topic.split("/")
        assert all(levels) and not any(c in topic for c in "+#\0"), topic
    for device, watched in DEVICES.items():
        mine = {t: c for t, c in configs.items() if c["device"]["identifiers"] == [f"edge-audio-{device}"]}
        assert {c["name"] for c in mine.values()} == set(watched) | {"Top sound", "Sound level", "Sound event"}
        assert {c["device"]["name"] for c in mine.values()} == {f"edge-audio {device}"}  # shown as it is
        assert {c["state_topic"] for t, c in mine.items() if "/binary_sensor/" in t} == \
            {Topics("edge-audio", device).state(label) for label in watched}


def test_a_device_subscribes_to_its_own_configs_only():
    configs = {device: _discovery(device, watched) for device, watched in DEVICES.items()}
    for device in DEVICES:
        pattern = homeassistant.own_configs(Topics("edge-audio", device), "homeassistant")
        for other, topics in configs.items():
            matched = {t for t in topics if topic_matches_sub(pattern, t)}
            binary = {t for t in topics if "/binary_sensor/" in t}
            assert matched == (binary if other == device else set()), (device, other)


def test_stale_cleanup_removes_only_this_device_s_configs():
    kitchen = Topics("edge-audio", "厨房")
    for topic, payload in _discovery("厨房", ["猫", "狗"]).items():
        if "/binary_sensor/" in topic:
            stale = homeassistant.stale_config(topic, json.dumps(payload).encode(), kitchen, ["猫"])
            # the label taken out names the state topic to clear, the one set_state() used
            assert stale == (None if payload["name"] == "猫" else slug("狗"))
            assert stale is None or kitchen.state(stale) == payload["state_topic"]
        for device in ("客厅", "Кухня"):  # another device, whatever it watches, leaves it alone
            assert homeassistant.stale_config(topic, json.dumps(payload).encode(), Topics("edge-audio", device),
                                              []) is None


def test_a_config_of_another_device_in_a_shared_node_is_left_alone(caplog):
    """Device ids that differ only in case share a node (their ids are kept for the entities installed): the one
    cannot clear the other's configs, and says why."""
    theirs = _discovery("Kitchen", ["Cat", "Dog"])["homeassistant/binary_sensor/kitchen/dog/config"]
    mine = Topics("edge-audio", "kitchen")
    with caplog.at_level(logging.WARNING, "edge.homeassistant"):
        assert homeassistant.stale_config("homeassistant/binary_sensor/kitchen/dog/config",
                                          json.dumps(theirs).encode(), mine, ["Cat"]) is None
    assert "also holds a config of 'Kitchen'" in caplog.text
    for payload in (b"not json", b"[]", b'{"device": {"identifiers": [7]}}'):
        assert homeassistant.stale_config("homeassistant/binary_sensor/kitchen/dog/config", payload, mine,
                                          ["Cat"]) is None
    own = _discovery("kitchen", ["Cat", "Dog"])["homeassistant/binary_sensor/kitchen/dog/config"]
    assert homeassistant.stale_config("homeassistant/binary_sensor/kitchen/dog/config", json.dumps(own).encode(),
                                      mine, ["Cat"]) == "dog"


def test_labels_that_share_an_id_are_reported(caplog):
    with caplog.at_level(logging.WARNING, "edge.homeassistant"):
        configs = _discovery("barn", ["Door bell", "Door-bell"])
    assert len([t for t in configs if "/binary_sensor/" in t]) == 1
    assert "labels 'Door bell' and 'Door-bell' share the id 'door_bell'" in caplog.text
