"""`python -m tools deploy --calibrate` against a real sshd "device": after its install, a release calibrates on the
device's own audio (here a WAV source replaying 13 minutes of real recordings, not paced); the result lives in
PREFIX/state, outlives later releases and is what their daemon loads; a calibration can be renewed without a new
release; a failed one is one line, exit 2, and keeps the previous calibration."""

from __future__ import annotations

import os
import subprocess
import time

from conftest import assert_one_line_error
import pytest

from realdeploy import (background_wav, current_id, deploy, kit, release_daemon_online, release_ids, silent_wav,
                        wav_settings)
from tools.rig.broker import Broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


def release_args(k, dev, broker, recording, *more):
    return [dev.address, "--prefix", dev.prefix, "--profile", "pi4-usb-coral", "--bundle", k.bundle,
            "--broker", f"127.0.0.1:{broker.port}", *wav_settings(k, recording), *more]


def assert_runs(k, prefix, broker) -> None:
    """The current release's daemon, with its calibration, comes online (on the kit's clip, looped at real time:
    the releases here calibrate on recordings that end)."""
    live = [f"audio.file={k.clip}", "audio.realtime=true", "audio.loop=true"]
    run = release_daemon_online(prefix, broker, live)
    assert run["retained"] and run["exit"] == 0 and "ignored" not in run["log"], run["log"][-600:]


def calibrated_rows(prefix) -> dict:
    """`edge-audio run --show-config` of the current release, as the unit runs it: {label: threshold} for each
    label whose threshold comes from the calibration, after checking which file that is."""
    proc = subprocess.run([str(prefix / "current" / "venv" / "bin" / "edge-audio"), "run", "--config",
                           str(prefix / "current" / "config.toml"), "--show-config"], capture_output=True, text=True,
                          env=dict(os.environ, EDGE_AUDIO_HOME=str(prefix / "state")), cwd="/", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"calibration: {prefix / 'state' / 'calibration.toml'}" in proc.stdout.splitlines()
    rows = [l.split() for l in proc.stdout.splitlines() if l.endswith("  calibration")]
    return {" ".join(r[:-3]): float(r[-3]) for r in rows}


def file_thresholds(path) -> dict:
    import tomllib
    return tomllib.loads(path.read_text())["detector"]["thresholds"]


def test_a_calibration_on_the_device_outlives_new_releases_and_a_failed_one_keeps_it(rig, assets, tmp_path, broker):
    k, dev = kit(assets), rig.devices["dev1"]
    background, cal = background_wav(assets), dev.prefix / "state" / "calibration.toml"
    t0 = time.monotonic()
    first = deploy(rig, k, *release_args(k, dev, broker, background, "--device-id", "a", "--calibrate", "15"))
    first_s = time.monotonic() - t0
    assert first.code == 0, first.err
    a = current_id(dev.prefix)
    assert f"installed {a}" in first.err and f"calibrating {a} on 15 min" in first.err
    assert "edge-audio: listening: 13.0 / 15.0 min" in first.err  # the device's progress, streamed as it came
    text = cal.read_text()
    assert f"# config {dev.prefix}/releases/{a}/config.toml" in text and "background_minutes = 13.33" in text
    thresholds = file_thresholds(cal)
    assert len(thresholds) >= 3 and set(thresholds) <= {"Dog", "Baby cry, infant cry", "Smoke detector, smoke alarm",
                                                        "Glass", "Doorbell"}
    assert calibrated_rows(dev.prefix) == thresholds
    assert_runs(k, dev.prefix, broker)

    # a new release (another device id): the calibration is not touched, and the new daemon loads it
    second = deploy(rig, k, *release_args(k, dev, broker, background, "--device-id", "b"))
    assert second.code == 0, second.err
    b = current_id(dev.prefix)
    assert b != a and 'id = "b"' in (dev.prefix / "current" / "config.toml").read_text()
    assert cal.read_text() == text and calibrated_rows(dev.prefix) == thresholds
    assert_runs(k, dev.prefix, broker)

    # calibrate again, no new release: nothing built or uploaded, the current release listens again
    t0 = time.monotonic()
    again = deploy(rig, k, dev.address, "--prefix", dev.prefix, "--calibrate", "15", "--false-starts-per-day", "50")
    again_s = time.monotonic() - t0
    assert again.code == 0, again.err
    assert release_ids(dev.prefix) == sorted([a, b]) and current_id(dev.prefix) == b
    assert "uploading" not in again.err and "calibrating the current release" in again.err
    renewed = file_thresholds(cal)
    assert "target_false_starts_per_day = 50.0" in cal.read_text() and set(renewed) >= set(thresholds)
    assert all(renewed[l] <= thresholds[l] for l in thresholds) and renewed != thresholds  # 50 a day: lower
    assert calibrated_rows(dev.prefix) == renewed

    # a release whose microphone is silent: it installs, its calibration fails in one line, the old one stays
    kept = cal.read_bytes()
    silent = deploy(rig, k, *release_args(k, dev, broker, silent_wav(tmp_path), "--device-id", "c", "--calibrate", "1"))
    c = current_id(dev.prefix)
    line = assert_one_line_error(silent, 2, "calibration failed", "the audio is silent",
                                 f"the previous calibration is kept ({cal})")
    assert c not in (a, b) and f"release {c} is installed and current" in line
    assert cal.read_bytes() == kept and not [p for p in cal.parent.iterdir() if p.name.endswith(".new")]
    assert calibrated_rows(dev.prefix) == renewed
    assert_runs(k, dev.prefix, broker)
    print(f"\ndeploy + calibration of 13.3 min of audio {first_s:.1f} s; calibration alone {again_s:.1f} s; "
          f"thresholds {thresholds}, at 50/day {renewed}")


def test_calibration_mistakes_are_one_line(rig, assets):
    k, dev = kit(assets), rig.devices["dev1"]
    cases = [
        ([dev.address, "--calibrate", "0"], "--calibrate 0: must be more than 0"),
        ([dev.address, "--calibrate", "20000"], "at most a week"),
        ([dev.address, "--calibrate", "5", "--false-starts-per-day", "0"], "must be greater than 0"),
        ([dev.address, "--false-starts-per-day", "2", "--profile", "pi4-usb-coral"], "goes with --calibrate"),
        ([dev.address, "--calibrate", "5", "--list"], "not with --list or --rollback"),
        (["root@127.0.0.1;reboot", "--calibrate", "5"], "expected USER@HOST[:PORT]"),
        ([dev.address, "--prefix", dev.prefix, "--calibrate", "5"], f"no release is current under {dev.prefix}"),
    ]
    for args, needle in cases:
        assert_one_line_error(deploy(rig, k, *args), 2, needle)
    dry = deploy(rig, k, dev.address, "--prefix", dev.prefix, "--calibrate", "5", "--dry-run")
    assert dry.code == 0 and "would then run" in dry.err and "calibrate --minutes 5 --service auto" in dry.err
    assert "dry run" in dry.err.splitlines()[-1]
    rig.stop_device("dev1")
    assert_one_line_error(deploy(rig, k, dev.address, "--calibrate", "5"), 2, "connection refused")
    assert not dev.prefix.exists()
