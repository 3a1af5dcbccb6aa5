"""The release steps' pure parts on a real filesystem: the atomic switch, listing, pruning, fingerprints, config
overrides, the unit rendered for a prefix; and the host side's target grammar and one-line SSH failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from edge import firmware
from edge.app.release.commands import REASON_CHARS, list_line
from edge.app.release.compose import set_key, toml_value, values_match
from edge.app.release.steps import Rejected, ReleaseJob
from edge.app.release.store import (INSTALL_LOG, INSTALLING, INTERRUPTED, OK, RECORDS_KEPT, REJECTED, RELEASE_FILE,
                                    InstallLock, Layout, Release, current_release, drop_old_records, fingerprint,
                                    install_running, list_releases, load_release, previous_good, prune, strip,
                                    switch)
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


def test_previous_good_and_prune_keep_the_current_and_only_the_record_of_a_rejected_one(tmp_path):
    layout = Layout.at(str(tmp_path / "p"))
    layout.create()
    ids = [f"2025010{i}T000000Z-0.1.0" for i in range(1, 7)]
    releases = [make_release(layout, rid, REJECTED if i == 3 else OK) for i, rid in enumerate(ids)]
    (releases[3].path / "venv" / "bin").mkdir(parents=True)  # rejected by a kit that kept it whole
    (releases[3].path / "venv" / "bin" / "python").write_bytes(b"x" * 4096)
    (releases[3].path / INSTALL_LOG).write_text("selftest of the new release\n")
    switch(layout, releases[1])  # an old one is current (after a rollback)
    assert previous_good(layout, releases[5]).id == ids[4]
    assert previous_good(layout, releases[4]).id == ids[2]  # ids[3] was rejected
    removed = prune(layout, keep=2)
    left = [r.id for r in list_releases(layout)]
    assert left == [ids[1], ids[3], ids[4], ids[5]] and removed == [ids[0], ids[2]]
    assert sorted(p.name for p in releases[3].path.iterdir()) == [INSTALL_LOG, RELEASE_FILE]
    with pytest.raises(InputError):
        prune(layout, keep=0)


def test_rejected_releases_keep_the_newest_records_only(tmp_path):
    layout = Layout.at(str(tmp_path / "p"))
    layout.create()
    good = make_release(layout, "20250101T000000Z-0.1.0")
    switch(layout, good)
    rejected = [make_release(layout, f"20250102T0000{n:02d}Z-0.1.0", REJECTED) for n in range(RECORDS_KEPT + 3)]
    with InstallLock(layout) as lock:  # another install, under way
        installing = make_release(layout, "20250103T000000Z-0.1.0", INSTALLING)
        lock.note(installing.id)
        removed = drop_old_records(layout)
        assert removed == [r.id for r in rejected[:3]]
        assert [r.id for r in list_releases(layout)] == [good.id, *[r.id for r in rejected[3:]], installing.id]
        assert prune(layout, keep=1) == [] and load_release(installing.path).status == INSTALLING


def test_strip_leaves_the_record_and_says_what_it_freed(tmp_path):
    layout = Layout.at(str(tmp_path / "p"))
    layout.create()
    r = make_release(layout, "20250101T000000Z-0.1.0", REJECTED)
    (r.path / "venv" / "lib").mkdir(parents=True)
    (r.path / "venv" / "lib" / "big.so").write_bytes(b"\0" * 100_000)
    (r.path / "config.toml").write_text("[device]\n")
    os.symlink("venv/lib", r.path / "link")
    (r.path / INSTALL_LOG).write_text("log\n")
    freed = strip(r)
    assert sorted(p.name for p in r.path.iterdir()) == [INSTALL_LOG, RELEASE_FILE]
    assert 100_000 + len("[device]\n") <= freed < 100_000 + 200


def test_list_shows_why_a_release_was_rejected_on_one_line(tmp_path):
    layout = Layout.at(str(tmp_path / "p"))
    layout.create()
    ok = make_release(layout, "20250101T000000Z-0.1.0")
    ok.save(profile="pi4-usb-coral")
    short = make_release(layout, "20250102T000000Z-0.1.0", REJECTED)
    short.save(reason="selftest: clip: miaow_16k.wav no longer classifies as Cat\n(mean of 13 windows)")
    long = make_release(layout, "20250103T000000Z-0.1.0", REJECTED)
    long.save(reason="installing the release failed: " + "x" * 400)
    silent = make_release(layout, "20250104T000000Z-0.1.0", REJECTED)
    lines = [list_line(r, r.id == ok.id) for r in (ok, short, long, silent)]
    assert lines[0].startswith(f"* {ok.id}") and lines[0].endswith("profile pi4-usb-coral")
    assert lines[1].split(None, 2) == [short.id, "rejected", "selftest: clip: miaow_16k.wav no longer classifies "
                                                             "as Cat (mean of 13 windows)"]
    assert lines[2].endswith("...") and len(lines[2].split("rejected", 1)[1].strip()) == REASON_CHARS
    assert lines[3].endswith("no reason recorded") and all("\n" not in line for line in lines)


def test_a_rejected_install_keeps_its_record_and_log(tmp_path):
    """The install path itself, rejected at its first step (a --set it cannot write): nothing but the record."""
    layout = Layout.at(str(tmp_path / "p"))
    stage = tmp_path / "stage"
    (stage / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(stage / "wheels" / "edge_audio-0.1.0-py3-none-any.whl", "w") as z:
        z.writestr("edge/__init__.py", "")
    (stage / "bundle").mkdir()
    (stage / "bundle" / "model.tflite").write_bytes(b"\0" * 50_000)
    said = []
    job = ReleaseJob(layout, Service.choose("none", layout), said.append)
    with pytest.raises(Rejected, match="rejected: --set nodot: expected SECTION.KEY=VALUE.*no release stays current"):
        job.install(stage, "pi4-usb-coral", ["nodot"], "", False, 3, 5.0)
    [release] = list_releases(layout)
    assert release.status == REJECTED and release.info["reason"].startswith("--set nodot")
    assert sorted(p.name for p in release.path.iterdir()) == [INSTALL_LOG, RELEASE_FILE]
    log = (release.path / INSTALL_LOG).read_text()
    assert f"release {release.id} (was: none)" in log and "rejected: --set nodot" in log
    assert any("removed the rejected release's files (0 MiB)" in line for line in said)
    assert current_release(layout) is None


INSTALLING_CHILD = """
import sys, time
from edge.app.release.store import INSTALL_LOG, INSTALLING, InstallLock, Layout, Release
layout, rid = Layout.at(sys.argv[1]), sys.argv[2]
with InstallLock(layout) as lock:  # an install building its venv, in another process
    lock.note(rid)
    path = layout.releases / rid
    (path / "venv" / "lib").mkdir(parents=True)
    Release(rid, path, {"status": INSTALLING}).save()
    (path / "venv" / "lib" / "big.so").write_bytes(bytes(100_000))
    (path / INSTALL_LOG).write_text("venv with python3\\n")
    print("ready", flush=True)
    time.sleep(600)
"""


def installing_child(layout: Layout, rid: str) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", INSTALLING_CHILD, str(layout.prefix), rid], cwd=root,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    return child


def stop(child: subprocess.Popen) -> None:
    child.kill()  # as a power cut or a dropped ssh session: no clean-up runs
    child.wait()
    child.stdout.close()


def small_stage(folder: Path) -> Path:
    (folder / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(folder / "wheels" / "edge_audio-0.1.0-py3-none-any.whl", "w") as z:
        z.writestr("edge/__init__.py", "")
    return folder


def test_an_install_running_elsewhere_refuses_a_second_one_and_is_never_pruned(tmp_path):
    layout = Layout.at(str(tmp_path / "p"))
    layout.create()
    old = [make_release(layout, f"2025010{i}T000000Z-0.1.0") for i in range(1, 4)]
    switch(layout, old[-1])
    rid = "20250105T000000Z-0.1.0"
    child = installing_child(layout, rid)
    try:
        job = ReleaseJob(layout, Service.choose("none", layout), [].append)
        with pytest.raises(InputError, match=rf"^another install is running \(pid {child.pid}, release {rid}, "
                                             r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$") as refused:
            job.install(small_stage(tmp_path / "stage"), "pi4-usb-coral", ["nodot"], "", False, 1, 5.0)
        assert refused.value.exit_status == 2 and not isinstance(refused.value, Rejected)
        assert install_running(layout)
        assert prune(layout, keep=1) == [old[0].id, old[1].id]
        running = load_release(layout.releases / rid)
        assert running.status == INSTALLING and (running.path / "venv" / "lib" / "big.so").is_file()
        assert [r.id for r in list_releases(layout)] == [old[2].id, rid]  # the refused one made nothing
        assert list_line(running, False, install_running(layout)).split(None, 2)[1:] == [INSTALLING,
                                                                                         "install under way"]
    finally:
        stop(child)


def test_an_install_whose_process_died_is_rejected_and_reduced_by_the_next_install(tmp_path):
    layout = Layout.at(str(tmp_path / "p"))
    layout.create()
    rid = "20250105T000000Z-0.1.0"
    stop(installing_child(layout, rid))
    assert not install_running(layout)
    abandoned = load_release(layout.releases / rid)
    assert abandoned.status == INSTALLING  # what a killed install leaves, until the next install or prune
    assert "install interrupted" in list_line(abandoned, False, install_running(layout))
    said = []
    job = ReleaseJob(layout, Service.choose("none", layout), said.append)
    with pytest.raises(Rejected, match="rejected: --set nodot"):  # the lock was free: this install ran
        job.install(small_stage(tmp_path / "stage"), "pi4-usb-coral", ["nodot"], "", False, 1, 5.0)
    abandoned = load_release(layout.releases / rid)
    assert abandoned.status == REJECTED and abandoned.info["reason"] == INTERRUPTED
    assert sorted(p.name for p in abandoned.path.iterdir()) == [INSTALL_LOG, RELEASE_FILE]
    assert list_line(abandoned, False, False).split(None, 2) == [rid, REJECTED, INTERRUPTED]
    assert any(line.startswith(f"release {rid} was left installing") and "(0 MiB freed)" in line for line in said)
    assert not install_running(layout)  # the refused-or-finished install let go of the lock


def test_prune_rejects_a_dead_install_but_not_a_current_one(tmp_path):
    layout = Layout.at(str(tmp_path / "p"))
    layout.create()
    good = make_release(layout, "20250101T000000Z-0.1.0")
    live = make_release(layout, "20250102T000000Z-0.1.0", INSTALLING)  # died checking health: it is current
    switch(layout, live)
    dead = "20250103T000000Z-0.1.0"
    stop(installing_child(layout, dead))
    assert prune(layout, keep=1) == []
    assert load_release(layout.releases / dead).info == {"status": REJECTED, "reason": INTERRUPTED}
    assert sorted(p.name for p in (layout.releases / dead).iterdir()) == [INSTALL_LOG, RELEASE_FILE]
    assert load_release(live.path).status == INSTALLING and good.path.is_dir()


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


def tiny_bundle(folder: Path, labels=("Dog", "Cat", "Speech")) -> Path:
    from edge.model.bundle import write_manifest
    folder.mkdir(parents=True)
    (folder / "m.tflite").write_bytes(b"model")
    (folder / "labels.txt").write_text("\n".join(labels) + "\n")
    write_manifest(folder, {"name": "tiny", "input_kind": "waveform", "models": {"cpu": "m.tflite"},
                            "labels": "labels.txt"})
    return folder


def host_plan(config: Path | None, bundle: Path | None, settings: list[str], profile: str | None = None):
    from tools.deploy.host import Plan
    return Plan("/opt/edge-audio", profile, config, bundle, settings, "litert,mqtt", "python3", "auto", 3, None,
                None, False, False)


def test_a_release_is_validated_on_the_host_as_the_device_would(tmp_path):
    from tools.deploy.validate import check_release
    config = tmp_path / "site.toml"
    config.write_text('[audio]\nsource = "wav"\nfile = "/srv/site.wav"\n\n[detector]\nallow = ["Dog"]\n')
    bundle = tiny_bundle(tmp_path / "tiny")
    no_default = lambda: pytest.fail("the default bundle's labels were asked for")  # noqa: E731
    checked = check_release(host_plan(config, bundle, ['detector.allow=["cat", "Dog"]']), no_default)
    assert checked.config.detector.allow == ["cat", "Dog"] and checked.config.model.path == str(bundle.resolve())
    assert not checked.default_model and checked.labels_from == f"the bundle {bundle}"
    # the broker's TLS files are the device's: named, not looked for here
    tls = ["mqtt.tls=true", "mqtt.port=8883", "mqtt.ca_file=/etc/edge-audio/ca.pem"]
    assert check_release(host_plan(config, bundle, tls), no_default).config.mqtt.ca_file == "/etc/edge-audio/ca.pem"
    refused = [
        (['detector.allow=["Cat", "Bird"]'], "detector.allow: unknown label 'Bird'"),
        (['detector.thresholds={"Do" = 0.4}'], "detector.thresholds: unknown label 'Do'; did you mean 'Dog'?"),
        (["mqtt.port=notaport"], "mqtt.port must be an integer (got 'notaport')"),
        (["mqtt.tls=true", "mqtt.cert_file=/etc/edge-audio/c.pem"], "mqtt.cert_file and mqtt.key_file go together"),
        (["nodot=1"], "expected SECTION.KEY=VALUE"),
    ]
    for settings, needle in refused:
        with pytest.raises(InputError) as exc:
            check_release(host_plan(config, bundle, settings), no_default)
        assert needle in str(exc.value) and "nothing was sent to the device" in str(exc.value), str(exc.value)
        assert "\n" not in str(exc.value)
    (bundle / "m.tflite").write_bytes(b"modified")
    with pytest.raises(InputError, match="m.tflite: sha256 does not match.*nothing was sent"):
        check_release(host_plan(config, bundle, []), no_default)


def test_without_a_bundle_the_labels_are_the_default_bundles(tmp_path):
    from tools.deploy.validate import check_release
    labels = tiny_bundle(tmp_path / "default", ("Dog", "Baby cry, infant cry", "Smoke detector, smoke alarm",
                                                "Glass", "Doorbell")) / "labels.txt"
    checked = check_release(host_plan(None, None, [], "pi4-usb-coral"), lambda: labels)
    assert checked.default_model and checked.labels_from == "the default bundle's labels"
    with pytest.raises(InputError, match="detector.allow: unknown label 'NoSuchSound'"):
        check_release(host_plan(None, None, ['detector.allow=["NoSuchSound"]'], "pi4-usb-coral"), lambda: labels)
    # this machine has no default bundle: only what needs no labels is checked (the device checks the rest)
    assert check_release(host_plan(None, None, ['detector.allow=["NoSuchSound"]'], "pi4-usb-coral"),
                         lambda: None).labels_from == ""
    # the config names a model on the device: it runs that one, whatever this machine has
    own = check_release(host_plan(None, None, ["model.path=/srv/models/site"], "pi4-usb-coral"),
                        lambda: pytest.fail("not asked for"))
    assert not own.default_model and own.config.model.path == "/srv/models/site"

