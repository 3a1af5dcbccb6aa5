"""A fleet rollout through Ansible (firmware_configs/ansible/deploy.yml) to three real sshd "devices".

The good rollout reaches all three in two batches (the canary, then the rest), ships the default bundle (no
--bundle), honours each host's own variables over the command line's (its prefix, extras, profile or config file)
and says so, and calibrates each host on its own audio; each host's installed daemon then comes online on a real
broker. Stopped rollouts name the host, the step and the reason in one line, and what became of its release: a
canary whose Python is missing (nothing uploaded), a canary that fails its health check (switched back, the other
hosts never touched), a wave in which one host's config fails on the device (its release stays current) and
another's Ansible interpreter is missing. A bad host value is refused before anything is built or uploaded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import tomllib

from conftest import ROOT, assert_one_line_error, run_cli
from edge import firmware
from edge.app.release.compose import compose_config
from realdeploy import DEVICE_PYTHON, background_wav, current_id, kit, release_ids, release_info, selftest_current
from tools.rig.mqtt import Subscriber
from tools.rig.ports import free_port, stop_process


def hostvars(rig, k, broker_port: int, extra: dict | None = None, recording=None) -> dict:
    out = {}
    for name, dev in rig.devices.items():
        out[name] = {"ansible_control_path_dir": str(rig.folder / "cp"),  # this test's own ssh connections
                     "edge_audio_prefix": str(dev.prefix), "edge_audio_python": DEVICE_PYTHON,
                     "edge_audio_device_id": f"fleet-{name}", "edge_audio_broker": f"127.0.0.1:{broker_port}",
                     "edge_audio_set": ["audio.source=wav", f"audio.file={recording or k.clip}",
                                        "audio.realtime=false"]}
        out[name].update((extra or {}).get(name, {}))
    return out


def rollout(rig, k, inventory, variables: dict, *more, bundle: bool = True):
    inventory.write_text(rig.inventory(variables))
    return run_cli("deploy", "--inventory", inventory, *(["--bundle", k.bundle] if bundle else []),
                   "--wheel", k.wheel, "--wheelhouse", k.wheelhouse, "--platform", "x86_64-cp311", "--wave", "100%",
                   *more, module="tools", timeout=1200)


def threshold(prefix) -> float:
    return tomllib.loads((prefix / "current" / "config.toml").read_text())["detector"]["threshold"]


def logged(result) -> str:
    """The log file the rollout named (Ansible's own output), relative to where the command ran."""
    return (ROOT / re.search(r"output: (\S+\.log)", result.err).group(1)).read_text()


def test_rollout_host_values_daemons_online_and_failures_named(tmp_path, assets, broker, ssh_rig):
    k = kit(assets)
    mosquitto = broker()
    rig = ssh_rig
    for name in ("dev1", "dev2", "dev3"):
        rig.add(name)
    inventory = tmp_path / "inventory.yml"
    profile = firmware.profile_text("pi4-usb-coral")
    fleet = tmp_path / "fleet.toml"  # the fleet's --config
    fleet.write_text(compose_config(profile, None, ["detector.threshold=0.55"]))
    (tmp_path / "dev3.toml").write_text(compose_config(profile, None, ["detector.threshold=0.65"]))
    own = {"dev1": {"edge_audio_extras": "litert,mqtt,alsa"}, "dev2": {"edge_audio_profile": "pi4-usb-coral"},
           "dev3": {"edge_audio_config": "dev3.toml"}}  # relative to the inventory's folder
    good_vars = hostvars(rig, k, mosquitto.port, own, recording=background_wav(assets))
    fleet_args = ("--config", fleet, "--extras", "litert,mqtt")
    t0 = time.monotonic()
    first, good = good_rollout(rig, k, inventory, good_vars, fleet_args, tmp_path / "command-line-prefix")
    seconds = {"good_rollout_s": time.monotonic() - t0}
    calibrations = {n: (d.prefix / "state" / "calibration.toml").read_text() for n, d in rig.devices.items()}
    assert_daemons_come_online(rig, mosquitto.port)

    # the canary's Python is missing: stopped before anything is uploaded, in one line
    t0 = time.monotonic()
    missing = rollout(rig, k, inventory, good_vars | {"dev1": good_vars["dev1"] | {
        "edge_audio_python": "/nonexistent/python3"}}, *fleet_args)
    seconds["missing_python_s"] = time.monotonic() - t0
    assert_one_line_error(missing, 2, "dev1: check: /nonexistent/python3 not found; nothing was switched",
                          "stopped at the canary; not reached: dev2, dev3")
    t0 = time.monotonic()
    bad = stopped_canary(rig, k, inventory, mosquitto.port, first)
    seconds["stopped_canary_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    stopped_wave(rig, k, inventory, good_vars, fleet_args, first)
    seconds["stopped_wave_s"] = time.monotonic() - t0
    for name, dev in rig.devices.items():
        assert current_id(dev.prefix) == first[name]
        assert not any((dev.prefix / "incoming").iterdir())  # every upload removed, used or not
        assert (dev.prefix / "state" / "calibration.toml").read_text() == calibrations[name]
    print(json.dumps({k: round(v, 1) for k, v in seconds.items()}
                     | {"good_lines": len(good.err_lines), "stopped_lines": len(bad.err_lines)}))


def good_rollout(rig, k, inventory, good_vars: dict, fleet_args, unused):
    """All three hosts, each one's own values winning over the command line's, the default bundle shipped."""
    good = rollout(rig, k, inventory, good_vars, *fleet_args, "--prefix", unused, "--calibrate", "15", bundle=False)
    assert good.code == 0, good.err[-4000:]
    first = {name: current_id(dev.prefix) for name, dev in rig.devices.items()}
    for name, dev in rig.devices.items():
        assert first[name] and release_info(dev.prefix, first[name])["status"] == "ok"
        assert f'id = "fleet-{name}"' in (dev.prefix / "current" / "config.toml").read_text()
        manifest = json.loads((dev.prefix / "current" / "bundle" / "manifest.json").read_text())
        assert manifest["name"] == "yamnet-coral"  # the default bundle, shipped
        calibration = (dev.prefix / "state" / "calibration.toml").read_text()  # its own audio, after its install
        assert f"releases/{first[name]}/config.toml" in calibration
        assert '"Dog" = ' in calibration.split("[detector.thresholds]")[1]
    assert "no --bundle: shipping the default bundle yamnet-coral" in good.err
    # each host's own values won over the command line's, and a line said so for each flag
    assert not unused.exists()
    assert {n: threshold(d.prefix) for n, d in rig.devices.items()} == {"dev1": 0.55, "dev2": 0.5, "dev3": 0.65}
    assert {n: release_info(d.prefix, first[n])["options"]["extras"] for n, d in rig.devices.items()} == {
        "dev1": "litert,mqtt,alsa", "dev2": "litert,mqtt", "dev3": "litert,mqtt"}
    assert f"--prefix {unused}: the inventory's own edge_audio_prefix wins on dev1, dev2, dev3\n" in good.err
    assert "--extras litert,mqtt: the inventory's own edge_audio_extras wins on dev1\n" in good.err
    assert (f"--config {fleet_args[1]}: the inventory's own profile or config wins on dev2 (profile pi4-usb-coral), "
            "dev3 (edge_audio_config dev3.toml)") in good.err
    # one short line per host and step, in two batches: the canary, then the rest
    assert f"deploy: canary dev1: install: installed {first['dev1']} (was none)" in good.err
    assert all(f"deploy: wave 1 {n}: install: installed {first[n]} (was none)" in good.err for n in ("dev2", "dev3"))
    assert all(f"{n}: calibrate: calibrated in " in good.err for n in rig.devices)
    assert max(len(line) for line in good.err_lines) < 400, max(good.err_lines, key=len)
    assert "PLAY RECAP" not in good.out + good.err
    assert all(f'"host": "{n}"' in logged(good) for n in rig.devices)
    return first, good


def stopped_canary(rig, k, inventory, port: int, first: dict):
    """A new release whose canary cannot reach its broker: its health check fails after the switch."""
    dead = free_port()
    bad = rollout(rig, k, inventory, hostvars(rig, k, port, {"dev1": {"edge_audio_broker": f"127.0.0.1:{dead}"}}),
                  "--profile", "pi4-usb-coral")
    assert_one_line_error(bad, 2, "dev1: install: release ", "failed health", f"127.0.0.1:{dead}",
                          f"switched back to {first['dev1']}; the rollout stopped at the canary; "
                          "not reached: dev2, dev3")
    assert '"event": "failed", "host": "dev1"' in logged(bad)
    canary = rig.devices["dev1"]
    assert current_id(canary.prefix) == first["dev1"]
    rejected = [r for r in release_ids(canary.prefix) if r != first["dev1"]]
    assert len(rejected) == 1 and release_info(canary.prefix, rejected[0])["reason"].startswith("health")
    assert selftest_current(canary.prefix)["exit"] == 0
    for name in ("dev2", "dev3"):  # never reached: same release, nothing uploaded
        dev = rig.devices[name]
        assert current_id(dev.prefix) == first[name] and release_ids(dev.prefix) == [first[name]]
    return bad


def stopped_wave(rig, k, inventory, good_vars: dict, fleet_args, first: dict) -> None:
    """Two failures in one wave: dev2's config fails on the device (it keeps its release), dev3's Ansible
    interpreter is missing; the canary, given what it runs already, has nothing to do."""
    wave = rollout(rig, k, inventory, good_vars | {
        "dev2": good_vars["dev2"] | {"edge_audio_set": ["audio.source=wav", "audio.file=/nonexistent.wav"]},
        "dev3": good_vars["dev3"] | {"ansible_python_interpreter": "/usr/bin/python9"}}, *fleet_args, bundle=False)
    assert wave.code == 2 and "Traceback" not in wave.err
    assert f"deploy: canary dev1: install: unchanged {first['dev1']} (nothing uploaded)" in wave.err
    events = [json.loads(line) for line in logged(wave).splitlines() if line.startswith("{")]
    uploads = {e["host"]: e["event"] for e in events if e.get("task", "").startswith("Upload: the release")}
    assert uploads == {"dev1": "skipped", "dev2": "ok"}, uploads  # dev3 stopped before: its interpreter is missing
    assert not list((rig.devices["dev1"].prefix / "incoming").iterdir())  # the digests went with the upload folder
    assert re.search(r"deploy: dev2: install: release \S+ rejected: selftest: audio: .*/nonexistent.wav: WAV file "
                     rf"not found; {first['dev2']} stays current\n", wave.err), wave.err
    assert ("deploy: dev3: upload: /usr/bin/python9 not found (ansible_python_interpreter, which runs Ansible's "
            "modules); nothing was switched: it keeps its release\n") in wave.err
    assert "error: 2 hosts failed (dev2, dev3); the rollout stopped in wave 1; done: dev1" in wave.err


def assert_daemons_come_online(rig, port: int) -> None:
    """Each host's installed release, run as its service would run it, reports online on the broker."""
    sub = Subscriber(port, "edge-audio/+/status")
    daemons = []
    try:
        for dev in rig.devices.values():
            exe = dev.prefix / "current" / "venv" / "bin" / "edge-audio"
            env = dict(os.environ, EDGE_AUDIO_HOME=str(dev.prefix / "state"))
            daemons.append(subprocess.Popen([str(exe), "run", "--config", str(dev.prefix / "current" / "config.toml")],
                                            env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert sub.wait(lambda s: all(b"online" in s.payloads(f"fleet-{n}/status") for n in rig.devices), 60), \
            sub.received()
    finally:
        for proc in daemons:
            stop_process(proc)
        sub.close()


def test_bad_values_are_refused_before_upload_and_a_failed_upload_leaves_nothing(tmp_path, assets, ssh_rig):
    k = kit(assets)
    rig = ssh_rig
    for name in ("dev1", "dev2"):
        rig.add(name)
    inventory = tmp_path / "inventory.yml"
    empty = tmp_path / "mqtt_password.txt"
    empty.write_text("\n")
    cases = [({"dev2": {"edge_audio_set": ["audio.source=wav", f"audio.file={k.clip}", "detector.threshold=2"]}},
              ("dev2: ", "detector.threshold must be between 0.0 and 1.0", "nothing was sent")),
             ({"dev1": {"edge_audio_broker": "broker.lan:mqtt"}}, ("dev1: edge_audio_broker 'broker.lan:mqtt'",
                                                                   "HOST:PORT")),
             ({"dev2": {"edge_audio_config": "missing.toml"}}, ("dev2: edge_audio_config missing.toml: file not "
                                                                "found",)),
             ({"dev1": {"edge_audio_keep": 0}}, ("dev1: edge_audio_keep 0", "at least 1")),
             ({"dev2": {"edge_audio_password_file": str(empty)}}, (f"dev2: edge_audio_password_file '{empty}'",
                                                                   "empty"))]
    for extra, needles in cases:
        r = rollout(rig, k, inventory, hostvars(rig, k, free_port(), extra), "--profile", "pi4-usb-coral")
        assert_one_line_error(r, 2, *needles)
        assert "ansible-playbook" not in r.err  # the rollout never started
        assert not any(dev.prefix.exists() for dev in rig.devices.values())
    # the canary's upload arrives, then its Python cannot run the install step: the upload folder goes
    broken = tmp_path / "python3"  # a device Python that starts (the check passes) but cannot run the kit
    broken.write_text('#!/bin/sh\ncase "$1" in -c) exec /usr/bin/python3 "$@";; esac\n'
                      'echo "Fatal Python error: failed to get the Python codec of the filesystem encoding" >&2\n'
                      'exit 1\n')
    broken.chmod(0o755)
    r = rollout(rig, k, inventory, hostvars(rig, k, free_port(), {"dev1": {"edge_audio_python": str(broken)}}),
                "--profile", "pi4-usb-coral")
    assert_one_line_error(r, 2, "dev1: install: Fatal Python error: failed to get the Python codec",
                          "nothing was switched", "stopped at the canary; not reached: dev2")
    assert "deploy: canary dev1: upload: ok in " in r.err
    canary = rig.devices["dev1"]
    assert (canary.prefix / "incoming").is_dir() and not any((canary.prefix / "incoming").iterdir())
    assert release_ids(canary.prefix) == [] and not rig.devices["dev2"].prefix.exists()
