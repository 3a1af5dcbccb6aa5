"""`python -m tools deploy` against a real sshd "device": a release is built, uploaded, validated by the device's
own selftest and switched to; broken releases are rejected in one line and leave the previous one current;
--list, --rollback, no-op re-deploys, credentials and host keys behave as a fleet owner needs."""

from __future__ import annotations

import os
import shutil
import stat
import time

import pytest

from conftest import assert_one_line_error
from realdeploy import (current_id, deploy, kit, release_ids, release_info,
                        selftest_current, wav_settings)
from tools.rig.broker import Broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


def good_args(k, dev, broker, *more):
    return [dev.address, "--prefix", dev.prefix, "--profile", "pi4-usb-coral", "--bundle", k.bundle,
            "--broker", f"127.0.0.1:{broker.port}", *wav_settings(k), *more]


def test_deploy_validates_and_switches_and_the_same_deploy_again_is_a_no_op(rig, assets, broker):
    k, dev = kit(assets), rig.devices["dev1"]
    t0 = time.monotonic()
    r = deploy(rig, k, *good_args(k, dev, broker, "--device-id", "kitchen"))
    first_s = time.monotonic() - t0
    assert r.code == 0, r.err
    rid = current_id(dev.prefix)
    assert rid and release_ids(dev.prefix) == [rid] and release_info(dev.prefix, rid)["status"] == "ok"
    assert f"installed {rid}" in r.err and "service not restarted: systemd is not the init system" in r.err
    release = dev.prefix / "releases" / rid
    config = (release / "config.toml").read_text()
    assert f'path = "{release}/bundle"' in config and 'id = "kitchen"' in config
    assert f"ExecStart={dev.prefix}/current/venv/bin/edge-audio run" in (release / "edge-audio.service").read_text()
    assert (release / "udev" / "99-edgetpu-accelerator.rules").is_file()
    assert "u edge-audio" in (release / "sysusers" / "edge-audio.conf").read_text()
    report = selftest_current(dev.prefix)
    assert report["exit"] == 0, report
    clip = next(c for c in report["checks"] if c["name"] == "clip")
    assert clip["status"] == "ok" and "Cat" in clip["detail"]
    assert next(c for c in report["checks"] if c["name"] == "broker")["detail"].endswith("answers")
    # the installed wheel carries its package data: profiles and bench references, found from anywhere
    exe = str(release / "venv" / "bin" / "edge-audio")
    import subprocess
    listed = subprocess.run([exe, "profiles"], capture_output=True, text=True, cwd="/")
    assert "pi4-usb-coral" in listed.stdout.split()
    bench = subprocess.run([exe, "bench", "--check", "--model", str(release / "bundle"), "--delegate", "cpu",
                            "--seconds", "1", "--audio", str(k.clip), "--tolerance", "5"],
                           capture_output=True, text=True, cwd="/", timeout=300)
    assert bench.returncode == 0 and "x86-dev" in bench.stdout + bench.stderr, bench.stdout + bench.stderr
    # the same deploy again: nothing uploaded, nothing changed
    t0 = time.monotonic()
    again = deploy(rig, k, *good_args(k, dev, broker, "--device-id", "kitchen"))
    assert again.code == 0, again.err
    assert "nothing to do" in again.err and "uploading" not in again.err
    assert release_ids(dev.prefix) == [rid] and current_id(dev.prefix) == rid
    print(f"first deploy {first_s:.1f} s, no-op re-deploy {time.monotonic() - t0:.1f} s")


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


def test_broken_releases_are_rejected_in_one_line_and_the_previous_stays_current(rig, assets, broker, tmp_path):
    k, dev = kit(assets), rig.devices["dev1"]
    assert deploy(rig, k, *good_args(k, dev, broker)).code == 0
    good = current_id(dev.prefix)
    typo = tmp_path / "typo.toml"
    typo.write_text((dev.prefix / "current" / "config.toml").read_text().replace("threshold = 0.5",
                                                                                 "treshold = 0.5"))
    cases = [
        (["--config", typo], "detector.treshold"),
        (["--bundle", corrupt_model(k.bundle, tmp_path)], "sha256 does not match"),
        (["--bundle", broken_front_end(k.bundle, tmp_path)], "no longer classifies as Cat"),
    ]
    for extra, needle in cases:
        args = good_args(k, dev, broker)
        if extra[0] == "--bundle":
            args[args.index("--bundle") + 1] = extra[1]
        else:
            args = [a for a in args if a not in ("--profile", "pi4-usb-coral")] + extra
        r = deploy(rig, k, *args)
        line = assert_one_line_error(r, 2, "rejected", needle)
        assert f"{good} stays current" in line
        assert current_id(dev.prefix) == good
        assert selftest_current(dev.prefix)["exit"] == 0
    statuses = [release_info(dev.prefix, rid)["status"] for rid in release_ids(dev.prefix)]
    assert statuses.count("rejected") == 3 and statuses.count("ok") == 1


def test_list_rollback_and_state_that_outlives_releases(rig, assets, tmp_path):
    k, dev = kit(assets), rig.devices["dev1"]
    secured = Broker(tmp_path / "secured", users={"edge-audio": "s3cret-pw"})
    try:
        password = tmp_path / "password"
        password.write_text("s3cret-pw\n")
        first = deploy(rig, k, *good_args(k, dev, secured, "--device-id", "a", "--password-file", password))
        assert first.code == 0, first.err  # health needed the broker: the stored credential reached it
        a = current_id(dev.prefix)
        secret = dev.prefix / "etc" / "mqtt_password"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
        kept = dev.prefix / "state" / "calibration.json"
        kept.write_text('{"Dog": 0.6}\n')
        second = deploy(rig, k, *good_args(k, dev, secured, "--device-id", "b", "--service", "user"))
        assert second.code == 0, second.err
        b = current_id(dev.prefix)
        assert b != a and "WantedBy=default.target" in (dev.prefix / "current" / "edge-audio.service").read_text()
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
