"""Topics and Home Assistant discovery per source: a daemon with named sources ("kitchen", "porch") has each one's
topics under its own level and announces a Home Assistant device per source, through the daemon's device; a
config with [audio] alone (source "") keeps the topics and the discovery it always had. The real broker:
tests/integration/test_source_sinks.py."""

from __future__ import annotations

import json
import logging

import pytest
from paho.mqtt.client import topic_matches_sub

from edge.sinks import homeassistant
from edge.sinks.topics import Topics, slug

WATCHED = {"kitchen": ["Dog", "Speech"], "porch": ["Doorbell"]}


def _announced(watched: dict, device: str = "pi") -> dict[str, dict]:
    messages = homeassistant.announcements(Topics("edge-audio", device), "homeassistant", watched, "m", "b")
    return {topic: json.loads(payload) for topic, payload in messages}


def test_a_named_source_has_its_own_level_and_the_device_keeps_status_and_metrics():
    pi = Topics("edge-audio", "pi")
    kitchen = pi.of("kitchen")
    assert (kitchen.events, kitchen.top, kitchen.scores, kitchen.metrics, kitchen.status, kitchen.state("Dog")) == (
        "edge-audio/pi/kitchen/events", "edge-audio/pi/kitchen/top", "edge-audio/pi/kitchen/scores",
        "edge-audio/pi/kitchen/metrics", "edge-audio/pi/kitchen/status", "edge-audio/pi/kitchen/state/dog")
    assert kitchen.device() == pi == pi.of("") and (pi.status, pi.metrics) == ("edge-audio/pi/status",
                                                                              "edge-audio/pi/metrics")
    # source "": the layout without sources, unchanged
    assert (pi.events, pi.top, pi.scores, pi.state("Baby cry, infant cry")) == (
        "edge-audio/pi/events", "edge-audio/pi/top", "edge-audio/pi/scores", "edge-audio/pi/state/baby_cry_infant_cry")


@pytest.mark.parametrize("prefix", ["edge-audio", "home/sound"])
def test_parse_names_device_source_and_kind_in_both_layouts(prefix):
    for source in ("", "kitchen", "厨房"):
        t = Topics(prefix, "pi", source)
        for topic, kind in ((t.events, "events"), (t.status, "status"), (t.top, "top"), (t.metrics, "metrics"),
                            (t.scores, "scores"), (t.state("Dog"), "state/dog"), (t.state("Events"), "state/events"),
                            (t.state("Status"), "state/status")):
            assert Topics.parse(topic, prefix) == ("pi", source, kind), topic
    assert Topics.parse("edge-audio/pi/porch/state/dog") == ("pi", "porch", "state/dog")  # the default prefix
    assert Topics.parse("edge-audio/pi/state/dog") == ("pi", "", "state/dog")


def test_each_source_subscription_hears_only_its_own_topics():
    pi = Topics("edge-audio", "pi")
    kitchen, porch = pi.of("kitchen"), pi.of("porch")
    for topic in (kitchen.events, kitchen.status, kitchen.state("Dog"), kitchen.metrics):
        assert any(topic_matches_sub(s, topic) for s in kitchen.subscriptions(metrics=True))
        assert not any(topic_matches_sub(s, topic) for s in porch.subscriptions(metrics=True))
        assert any(topic_matches_sub(s, topic) for s in pi.subscriptions(metrics=True))  # the monitor hears both


def test_a_device_per_source_through_the_daemon_s_device():
    configs = _announced(WATCHED)
    assert len(configs) == 1 + (2 + 3) + (1 + 3) and len({c["unique_id"] for c in configs.values()}) == len(configs)
    daemon = configs.pop("homeassistant/sensor/pi/delegate/config")  # the daemon's device keeps one entity
    assert daemon["device"]["identifiers"] == ["edge-audio-pi"] and "via_device" not in daemon["device"]
    assert daemon["state_topic"] == "edge-audio/pi/metrics" and daemon["value_template"] == "{{ value_json.delegate }}"
    assert daemon["availability_topic"] == "edge-audio/pi/status"
    for source, labels in WATCHED.items():
        t = Topics("edge-audio", "pi", source)
        node = f"pi__{source}"
        mine = {topic: c for topic, c in configs.items() if topic.split("/")[2] == node}
        assert {c["name"] for c in mine.values()} == set(labels) | {"Top sound", "Sound level", "Sound event"}
        for c in mine.values():
            assert c["device"]["identifiers"] == [f"edge-audio-pi/{source}"]
            assert c["device"]["name"] == f"edge-audio pi {source}" and c["device"]["via_device"] == "edge-audio-pi"
            assert c["unique_id"].startswith(f"edge_audio_{node}_")
            assert c["availability"] == [{"topic": s, "payload_available": "online", "payload_not_available": "offline"}
                                         for s in ("edge-audio/pi/status", t.status)]
            assert c["availability_mode"] == "all" and "availability_topic" not in c
        by_name = {c["name"]: c for c in mine.values()}
        assert {by_name[label]["state_topic"] for label in labels} == {t.state(label) for label in labels}
        assert (by_name["Top sound"]["state_topic"], by_name["Sound level"]["state_topic"],
                by_name["Sound event"]["state_topic"]) == (t.top, t.metrics, t.events)


def test_a_config_with_audio_alone_announces_what_it_always_did():
    legacy = _announced({"": ["Cat", "Dog"]}, "kitchen")
    assert legacy == {t: json.loads(p) for t, p in homeassistant.discovery_messages(
        Topics("edge-audio", "kitchen"), "homeassistant", ["Cat", "Dog"], "m", "b")}
    assert sorted(legacy) == [f"homeassistant/{kind}/kitchen/{name}/config" for kind, name in (
        ("binary_sensor", "cat"), ("binary_sensor", "dog"), ("event", "sound"), ("sensor", "sound_level"),
        ("sensor", "top"))]
    for c in legacy.values():
        assert c["device"]["identifiers"] == ["edge-audio-kitchen"] and "via_device" not in c["device"]
        assert c["availability_topic"] == "edge-audio/kitchen/status" and "availability" not in c


def test_source_nodes_never_meet_a_device_node():
    """'__' joins device and source: slug never yields it, so no device's node, nor another pair's, is the same."""
    for name in ("a__b", "_a_", "猫__狗", "x  y", "Café__"):
        assert "__" not in slug(name)
    nodes = {homeassistant.node(Topics("p", d, s)) for d, s in (("a", "b_c"), ("a_b", "c"), ("a", ""), ("a_b_c", ""))}
    assert len(nodes) == 4


def test_stale_cleanup_per_source_touches_only_that_source_s_device(caplog):
    configs = _announced({"kitchen": ["Dog", "Speech"], "porch": ["Dog"]})
    pi = Topics("edge-audio", "pi")
    kitchen, porch = pi.of("kitchen"), pi.of("porch")
    binary = {t: json.dumps(c).encode() for t, c in configs.items() if "/binary_sensor/" in t}
    for topics, pattern_node in ((kitchen, "pi__kitchen"), (porch, "pi__porch"), (pi, "pi")):
        pattern = homeassistant.own_configs(topics, "homeassistant")
        assert pattern == f"homeassistant/binary_sensor/{pattern_node}/+/config"
        assert {t for t in binary if topic_matches_sub(pattern, t)} == {t for t in binary if f"/{pattern_node}/" in t}
    gone = {t: homeassistant.stale_config(t, p, kitchen, ["Dog"]) for t, p in binary.items()}
    assert gone == {"homeassistant/binary_sensor/pi__kitchen/dog/config": None,
                    "homeassistant/binary_sensor/pi__kitchen/speech/config": "speech",
                    "homeassistant/binary_sensor/pi__porch/dog/config": None}  # another source's node: never
    assert all(homeassistant.stale_config(t, p, pi, []) is None for t, p in binary.items())  # nor the daemon's
    # a config in the kitchen node that names another device (the daemon's own, another source) is left alone
    theirs = dict(configs["homeassistant/binary_sensor/pi__kitchen/speech/config"])
    for other in (["edge-audio-pi"], ["edge-audio-pi/porch"], ["edge-audio-Pi/kitchen"]):
        payload = json.dumps(dict(theirs, device=dict(theirs["device"], identifiers=other))).encode()
        with caplog.at_level(logging.WARNING, "edge.homeassistant"):
            assert homeassistant.stale_config("homeassistant/binary_sensor/pi__kitchen/speech/config", payload,
                                              kitchen, ["Dog"]) is None
