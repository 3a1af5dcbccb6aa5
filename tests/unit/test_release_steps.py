"""The release steps' pure parts on a real filesystem: the atomic switch, listing, pruning, fingerprints, config
overrides, the unit rendered for a prefix; and the host side's target grammar and one-line SSH failures."""

from __future__ import annotations

import json
import os
import threading
import zipfile
from pathlib import Path

import pytest

from edge import firmware
from edge.app.release.compose import set_key, toml_value, values_match
from edge.app.release.store import (OK, REJECTED, Layout, Release, current_release, fingerprint, list_releases,
                                    previous_good, prune, switch)
from edge.app.release.service import Service
from edge.config import parse_config
from edge.core.errors import InputError
from tools.deploy.remote import Target, ssh_failure


def make_release(layout: Layout, rid: str, status: str = OK) -> Release:
    path = layout.releases / rid
    path.mkdir(parents=True)
    release = Release(rid, path, {"status": status})
    release.save()
    return release


def test_switch_replaces_the_link_without_a_moment_without_current(tmp_path):
    layout = Layout.at(str(tmp_path / "p"))
    layout.create()
    a, b = make_release(layout, "20250101T000000Z-0.1.0"), make_release(layout, "20250102T000000Z-0.1.0")
    switch(layout, a)
    seen_missing = []
    stop = threading.Event()

    def watch():  # a reader polling `current` the whole time
        while not stop.is_set():
            if not os.path.lexists(layout.current):
                seen_missing.append(1)

    t = threading.Thread(target=watch)
    t.start()
    for _ in range(300):
        switch(layout, b)
        switch(layout, a)
    stop.set()
    t.join()
    assert not seen_missing
    assert current_release(layout).id == a.id
    assert os.readlink(layout.current) == f"releases/{a.id}"  # relative: the prefix can move


def test_previous_good_and_prune_keep_the_current_and_drop_rejected(tmp_path):
    layout = Layout.at(str(tmp_path / "p"))
    layout.create()
    ids = [f"2025010{i}T000000Z-0.1.0" for i in range(1, 7)]
    releases = [make_release(layout, rid, REJECTED if i == 3 else OK) for i, rid in enumerate(ids)]
    switch(layout, releases[1])  # an old one is current (after a rollback)
    assert previous_good(layout, releases[5]).id == ids[4]
    assert previous_good(layout, releases[4]).id == ids[2]  # ids[3] was rejected
    removed = prune(layout, keep=2)
    left = [r.id for r in list_releases(layout)]
    assert left == [ids[1], ids[4], ids[5]]
    assert ids[3] in removed and ids[0] in removed
    with pytest.raises(InputError):
        prune(layout, keep=0)


def test_fingerprint_ignores_wheel_build_times_but_not_content(tmp_path):
    def stage(folder: Path, when: tuple, payload: bytes) -> Path:
        (folder / "wheels").mkdir(parents=True)
        with zipfile.ZipFile(folder / "wheels" / "edge_audio-0.1.0-py3-none-any.whl", "w") as z:
            z.writestr(zipfile.ZipInfo("edge/__init__.py", date_time=when), payload)
        (folder / "config.toml").write_text("[device]\nid = 'a'\n")
        return folder

    one = fingerprint(stage(tmp_path / "1", (2020, 1, 1, 0, 0, 0), b"x = 1\n"), {"profile": ""})
    same = fingerprint(stage(tmp_path / "2", (2024, 5, 5, 5, 5, 5), b"x = 1\n"), {"profile": ""})
    other = fingerprint(stage(tmp_path / "3", (2020, 1, 1, 0, 0, 0), b"x = 2\n"), {"profile": ""})
    options = fingerprint(stage(tmp_path / "4", (2020, 1, 1, 0, 0, 0), b"x = 1\n"), {"profile": "pi4"})
    assert one == same
    assert len({one, other, options}) == 3


def test_set_key_edits_a_profile_and_the_result_is_a_valid_config():
    text = firmware.profile_text("pi4-usb-coral")
    text = set_key(text, "device.id", toml_value('kitchen "north"'))
    text = set_key(text, "mqtt.port", toml_value("1884"))
    text = set_key(text, "mqtt.enabled", toml_value("false"))
    text = set_key(text, "model.path", json.dumps("/opt/edge-audio/releases/x/bundle"))
    text = set_key(text, "metrics.interval_seconds", toml_value("5"))
    cfg = parse_config(text)
    assert cfg.device.id == 'kitchen "north"'
    assert (cfg.mqtt.port, cfg.mqtt.enabled, cfg.model.path) == (1884, False, "/opt/edge-audio/releases/x/bundle")
    assert cfg.metrics.interval_seconds == 5.0
    assert cfg.detector.allow  # the rest of the profile is intact
    added = parse_config(set_key("[device]\nid = 'a'\n", "audio.source", toml_value("wav")).replace(
        "source", "file = '/x.wav'\nsource"))
    assert added.audio.source == "wav"
    assert toml_value("007") == '"007"' and toml_value("$(reboot)") == '"$(reboot)"'
    with pytest.raises(InputError):
        set_key(text, "nosection", "1")


def test_profiles_ship_in_the_package():
    names = firmware.profile_names()
    assert {"pi4-usb-coral", "pi5-usb-coral", "pi-zero-2w", "coral-devboard"} <= set(names)
    for name in names:
        parse_config(firmware.profile_text(name), name)
    with pytest.raises(InputError, match="not shipped"):
        firmware.profile_text("pi4;reboot")


def test_units_render_for_the_prefix(tmp_path):
    layout = Layout.at(str(tmp_path / "prefix"))
    layout.create()
    system = Service.choose("system", layout).unit_text()
    assert f"ExecStart={layout.prefix}/current/venv/bin/edge-audio run --config {layout.prefix}/current/config.toml" \
        in system
    assert f"ReadWritePaths={layout.prefix}/state" in system
    assert "LoadCredential" not in system  # no mqtt_password stored: systemd would refuse to start
    (layout.secrets / "mqtt_password").write_text("pw")
    user = Service.choose("user", layout).unit_text()
    assert f"LoadCredential=mqtt_password:{layout.prefix}/etc/mqtt_password" in user
    assert "%h" not in user and "WantedBy=default.target" in user
    with pytest.raises(InputError, match="cannot name it safely"):
        Service.choose("system", Layout.at(str(tmp_path / "a b")))
    Service.choose("none", Layout.at(str(tmp_path / "a b")))  # no unit, any path


def test_targets_and_ssh_failures_in_one_line():
    assert Target.parse("pi@kitchen.local:2222") == Target("pi", "kitchen.local", 2222)
    assert Target.parse("kitchen") == Target(None, "kitchen", None)
    assert str(Target.parse("root@[::1]:22")) == "root@[::1]:22"
    for bad in ("-oProxyCommand=x", "pi@host;reboot", "pi@host:99999", "a b"):
        with pytest.raises(InputError):
            Target.parse(bad)
    t = Target("pi", "10.0.0.7", 2222)
    changed = ssh_failure("pi@10.0.0.7:2222", t, ["@@@@", "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
                                                   "Host key verification failed."])
    assert "host key changed" in changed and "ssh-keygen -R '[10.0.0.7]:2222'" in changed and "\n" not in changed
    banner = ["Offending ED25519 key in /k/known_hosts:3", "  remove with:",
              '  ssh-keygen -f "/k/known_hosts" -R "[10.0.0.7]:2222"', "Host key verification failed."]
    assert 'ssh-keygen -f "/k/known_hosts" -R "[10.0.0.7]:2222"' in ssh_failure("x", t, [
        "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @", *banner])
    assert "connection refused" in ssh_failure("x", t, ["ssh: connect to host 10.0.0.7 port 2222: Connection refused"])
    assert "not in known_hosts" in ssh_failure("x", t, ["No ED25519 host key is known for [10.0.0.7]:2222 and you "
                                                        "have requested strict checking.",
                                                        "Host key verification failed."])


def test_set_values_are_compared_as_the_config_loads_them():
    assert values_match(5.0, "5") and values_match(1883, "1883") and values_match(False, "false")
    assert values_match("kitchen", "kitchen") and not values_match("kitchen", "hall")
    assert not values_match(0.5, "0.6") and not values_match(2, "two")
