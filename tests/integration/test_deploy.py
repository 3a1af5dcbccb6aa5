"""`python -m tools deploy` against a real sshd "device": a release is built, uploaded, validated by the device's
own selftest and switched to, and its daemon comes online on a real broker; a first deploy ships the default model
bundle; bad values are refused before anything is uploaded; broken releases are rejected in one line, leave only
their record and the previous one current; --list, --rollback, no-op re-deploys, credentials and host keys behave
as a fleet owner needs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time

import pytest

from conftest import assert_one_line_error
from realdeploy import (current_id, deploy, kit, release_daemon_online, release_ids, release_info,
                        selftest_current, wav_settings)
from edge.app.release.store import tree_size
from tools.deploy.wheelhouse import size_mib
from tools.rig.broker import Broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


def good_args(k, dev, broker, *more, bundle=True):
    return [dev.address, "--prefix", dev.prefix, "--profile", "pi4-usb-coral",
            *(["--bundle", k.bundle] if bundle else []), "--broker", f"127.0.0.1:{broker.port}",
            *wav_settings(k, live=True), *more]


def assert_daemon_online(prefix, broker) -> dict:
    """The release's daemon reached `online` (retained, as a late subscriber sees it) and stopped cleanly."""
    run = release_daemon_online(prefix, broker)
    assert run["retained"] and run["exit"] == 0, run["log"][-600:]
    assert run["status"][0] == "online" and run["status"][-1] == "offline", run["status"]
    return run


def test_a_first_deploy_as_the_readme_shows_ships_the_default_bundle_and_runs(rig, assets, broker):
    """No --bundle, a device with no bundle of its own: the default bundle goes with the release."""
    k, dev = kit(assets), rig.devices["dev1"]
    t0 = time.monotonic()
    r = deploy(rig, k, *good_args(k, dev, broker, "--device-id", "kitchen", bundle=False))
    first_s = time.monotonic() - t0
    assert r.code == 0, r.err
    assert f"{dev.address}: no model bundle on the device: shipping yamnet-coral ({size_mib(k.bundle):.1f} MiB) " \
           f"from the asset mirror {assets} (sha256 verified)" in r.err
    rid = current_id(dev.prefix)
    assert rid and release_ids(dev.prefix) == [rid] and release_info(dev.prefix, rid)["status"] == "ok"
    assert f"installed {rid}" in r.err and "service not restarted: systemd is not the init system" in r.err
    assert not list((dev.prefix / "incoming").iterdir())
    release = dev.prefix / "releases" / rid
    config = (release / "config.toml").read_text()
    assert f'path = "{release}/bundle"' in config and 'id = "kitchen"' in config
    assert (release / "bundle" / "manifest.json").is_file() and not (dev.prefix / "state" / "models").exists()
    assert f"ExecStart={dev.prefix}/current/venv/bin/edge-audio run" in (release / "edge-audio.service").read_text()
    assert (release / "udev" / "99-edgetpu-accelerator.rules").is_file()
    assert "u edge-audio" in (release / "sysusers" / "edge-audio.conf").read_text()
    assert "selftest of the new release" in (release / "install.log").read_text()
    t1 = time.monotonic()
    assert_daemon_online(dev.prefix, broker)
    daemon_s = time.monotonic() - t1
    report = selftest_current(dev.prefix)
    assert report["exit"] == 0, report
    clip = next(c for c in report["checks"] if c["name"] == "clip")
    assert clip["status"] == "ok" and "Cat" in clip["detail"]
    assert next(c for c in report["checks"] if c["name"] == "broker")["detail"].endswith("answers")
    # the installed wheel carries its package data: profiles and bench references, found from anywhere
    exe = str(release / "venv" / "bin" / "edge-audio")
    listed = subprocess.run([exe, "profiles"], capture_output=True, text=True, cwd="/")
    assert "pi4-usb-coral" in listed.stdout.split()
    bench = subprocess.run([exe, "bench", "--check", "--model", str(release / "bundle"), "--delegate", "cpu",
                            "--seconds", "1", "--audio", str(k.clip), "--tolerance", "5"],
                           capture_output=True, text=True, cwd="/", timeout=300)
    assert bench.returncode == 0 and "x86-dev" in bench.stdout + bench.stderr, bench.stdout + bench.stderr
    # the same deploy again: the same bundle would ship, so the release is the same: nothing uploaded or changed
    t0 = time.monotonic()
    again = deploy(rig, k, *good_args(k, dev, broker, "--device-id", "kitchen", bundle=False))
    assert again.code == 0, again.err
    assert "nothing to do" in again.err and "uploading" not in again.err
    assert release_ids(dev.prefix) == [rid] and current_id(dev.prefix) == rid
    print(f"first deploy {first_s:.1f} s, its daemon online and stopped {daemon_s:.1f} s, no-op re-deploy "
          f"{time.monotonic() - t0:.1f} s")


def test_bad_values_are_refused_before_anything_reaches_the_device(rig, assets, broker, tmp_path):
    k, dev = kit(assets), rig.devices["dev1"]
    typo = tmp_path / "typo.toml"
    typo.write_text(firmware_profile().replace("threshold = 0.5", "treshold = 0.5"))
    base = good_args(k, dev, broker)
    own_port = with_arg(base, "--broker", "127.0.0.1")  # the port comes from --set
    sent = "nothing was sent to the device"
    cases = [
        ([*own_port, "--set", "mqtt.port=notaport"], ["mqtt.port must be an integer (got 'notaport')", sent]),
        ([*own_port, "--set", "mqtt.port=8883"], ["mqtt.port 8883 is MQTT over TLS", sent]),
        ([*base, "--set", "mqtt.port=1884"], ["mqtt.port is set twice: by --set mqtt.port=1884 and --broker"]),
        ([*base, "--set", 'detector.allow=["NoSuchSound"]'], ["detector.allow: unknown label 'NoSuchSound'", sent]),
        ([*base, "--set", 'detector.thresholds={"Dgo" = 0.3}'], ["detector.thresholds: unknown label 'Dgo'", sent]),
        ([a for a in base if a not in ("--profile", "pi4-usb-coral")] + ["--config", typo],
         ["unknown key 'detector.treshold'", sent]),
        (with_arg(base, "--bundle", corrupt_model(k.bundle, tmp_path)), ["sha256 does not match", sent]),
    ]
    for args, needles in cases:
        r = deploy(rig, k, *args)
        assert_one_line_error(r, 2, *needles)
        assert "uploading" not in r.err and not dev.prefix.exists(), r.err  # the device was not even asked


def with_arg(args: list, flag: str, value) -> list:
    """`args` with the value after `flag` replaced."""
    i = args.index(flag) + 1
    return [*args[:i], value, *args[i + 1:]]


def firmware_profile() -> str:
    from edge import firmware
    return firmware.profile_text("pi4-usb-coral")


def corrupt_model(bundle, folder):
    copy = shutil.copytree(bundle, folder / "corrupt")
    model = copy / "yamnet_spectra_in.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    return copy


def broken_front_end(bundle, folder):
    """Hashes all match and the model loads, but the front end it asks for is wrong: the clip is not a cat."""
    import json
    copy = shutil.copytree(bundle, folder / "frontend")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["frontend"]["mel_min_hz"] = 3000.0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_a_rejected_release_leaves_its_record_only_and_the_previous_stays_current(rig, assets, broker, tmp_path):
    k, dev = kit(assets), rig.devices["dev1"]
    assert deploy(rig, k, *good_args(k, dev, broker)).code == 0
    good = current_id(dev.prefix)
    assert_daemon_online(dev.prefix, broker)
    good_mib = tree_size(dev.prefix / "releases" / good) / 2**20
    # valid on this machine (hashes match, the config is right), but the device's selftest finds the clip is no cat
    args = with_arg(good_args(k, dev, broker), "--bundle", broken_front_end(k.bundle, tmp_path))
    r = deploy(rig, k, *args)
    line = assert_one_line_error(r, 2, "rejected", "no longer classifies as Cat", f"{good} stays current")
    assert current_id(dev.prefix) == good and selftest_current(dev.prefix)["exit"] == 0
    rejected = next(rid for rid in release_ids(dev.prefix) if rid != good)
    record = dev.prefix / "releases" / rejected
    assert sorted(p.name for p in record.iterdir()) == ["install.log", "release.json"], line
    info = release_info(dev.prefix, rejected)
    assert info["status"] == "rejected" and "no longer classifies as Cat" in info["reason"]
    log = (record / "install.log").read_text()
    assert "selftest of the new release" in log and "rejected: selftest: clip:" in log
    freed = next(l for l in r.err.splitlines() if "removed the rejected release's files" in l)
    listed = deploy(rig, k, dev.address, "--prefix", dev.prefix, "--list")
    shown = next(l for l in listed.out.splitlines() if rejected in l)
    assert listed.code == 0 and shown.split()[:2] == [rejected, "rejected"], listed.out
    assert "selftest: clip: miaow_16k.wav no longer classifies as Cat" in shown
    # an upload the device could not use (its interpreter died starting the install) is not left behind
    dying = tmp_path / "python3"
    dying.write_text('#!/bin/sh\ncase "$1" in -m) echo Killed >&2; exit 137;; esac\nexec /usr/bin/python3 "$@"\n')
    dying.chmod(0o755)
    died = deploy(rig, k, *good_args(k, dev, broker, "--device-id", "other"), python=str(dying))
    assert_one_line_error(died, 2, "Killed")
    assert "uploaded in" in died.err and not list((dev.prefix / "incoming").iterdir())
    assert current_id(dev.prefix) == good and len(release_ids(dev.prefix)) == 2
    print(f"a rejected release leaves {tree_size(record) / 1024:.1f} KiB ({freed.split('files (')[1].split(')')[0]} "
          f"removed at once); the good release is {good_mib:.0f} MiB; --list shows:\n{shown}")


def test_list_rollback_and_state_that_outlives_releases(rig, assets, tmp_path):
    k, dev = kit(assets), rig.devices["dev1"]
    secured = Broker(tmp_path / "secured", users={"edge-audio": "s3cret-pw"})
    try:
        password = tmp_path / "password"
        password.write_text("s3cret-pw\n")
        first = deploy(rig, k, *good_args(k, dev, secured, "--device-id", "a", "--password-file", password))
        assert first.code == 0, first.err  # health needed the broker: the stored credential reached it
        a = current_id(dev.prefix)
        assert_daemon_online(dev.prefix, secured)  # the daemon too, with the credential the unit hands it
        secret = dev.prefix / "etc" / "mqtt_password"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
        kept = dev.prefix / "state" / "calibration.json"
        kept.write_text('{"Dog": 0.6}\n')
        # a bundle the device has of its own, where a release without one looks: no bundle is shipped
        shutil.copytree(k.bundle, dev.prefix / "state" / "models" / "yamnet-coral")
        second = deploy(rig, k, *good_args(k, dev, secured, "--device-id", "b", "--service", "user", bundle=False))
        assert second.code == 0, second.err
        b = current_id(dev.prefix)
        assert b != a and "WantedBy=default.target" in (dev.prefix / "current" / "edge-audio.service").read_text()
        assert "shipping" not in second.err and not (dev.prefix / "current" / "bundle").exists()
        assert 'path = ""' in (dev.prefix / "current" / "config.toml").read_text()
        assert_daemon_online(dev.prefix, secured)
        listed = deploy(rig, k, dev.address, "--prefix", dev.prefix, "--list")
        lines = [l for l in listed.out.splitlines() if l.strip()]
        assert listed.code == 0 and len(lines) == 2 and lines[1].startswith(f"* {b}") and lines[0].startswith(f"  {a}")
        back = deploy(rig, k, dev.address, "--prefix", dev.prefix, "--rollback")
        assert back.code == 0, back.err
        assert current_id(dev.prefix) == a and f"rolled back: {a} is current (was {b})" in back.err
        assert 'id = "a"' in (dev.prefix / "current" / "config.toml").read_text()
        assert selftest_current(dev.prefix)["exit"] == 0
        assert kept.read_text() == '{"Dog": 0.6}\n' and secret.read_text() == "s3cret-pw\n"
        # the password never went into a release or a command line the deploy shows
        for root, _, files in os.walk(dev.prefix / "releases"):
            for name in files:
                path = os.path.join(root, name)
                if name.endswith((".toml", ".json", ".service")):
                    assert "s3cret-pw" not in open(path).read(), path
        dry = deploy(rig, k, *good_args(k, dev, secured, "--device-id", "c", "--password-file", password,
                                        "--dry-run"))
        assert dry.code == 0 and "would upload" in dry.err and "s3cret" not in dry.out + dry.err
        assert current_id(dev.prefix) == a
    finally:
        secured.stop()


def test_a_changed_host_key_refuses_in_one_line(rig, assets, broker):
    k, dev = kit(assets), rig.devices["dev1"]
    rig.change_host_key("dev1")
    r = deploy(rig, k, *good_args(k, dev, broker))
    line = assert_one_line_error(r, 2, "host key changed", "refusing")
    assert "ssh-keygen" in line and not dev.prefix.exists()
    rig.stop_device("dev1")
    assert_one_line_error(deploy(rig, k, dev.address, "--prefix", dev.prefix, "--list"), 2, "connection refused")


def test_hostile_values_stay_values(rig, assets, broker, tmp_path):
    """Profile names, prefixes and settings reach the device as quoted arguments: nothing they hold is run."""
    k, dev = kit(assets), rig.devices["dev1"]
    marker = tmp_path / "pwned"
    r = deploy(rig, k, dev.address, "--prefix", dev.prefix, "--profile", f"pi4;touch {marker}")
    assert_one_line_error(r, 2, "is not shipped")
    r = deploy(rig, k, dev.address, "--prefix", f"{tmp_path}/x$(touch {marker})", "--profile", "pi4-usb-coral")
    assert_one_line_error(r, 2, "cannot name it safely")
    assert_one_line_error(deploy(rig, k, f"root@127.0.0.1;touch {marker}", "--profile", "pi4-usb-coral"), 2,
                          "expected USER@HOST[:PORT]")
    assert not marker.exists()
