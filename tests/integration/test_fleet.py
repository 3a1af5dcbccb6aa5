"""A fleet rollout through Ansible (firmware_configs/ansible/deploy.yml) to three real sshd "devices": the good
rollout reaches all three and calibrates each on its own audio (`--calibrate`, the playbook's optional step); a
rollout whose canary fails its health check stops there, switches the canary back and never touches the other two
(nor any calibration)."""

from __future__ import annotations

import json
import time

from conftest import assert_one_line_error, run_cli
from realdeploy import DEVICE_PYTHON, background_wav, current_id, kit, release_ids, release_info, selftest_current
from tools.rig.ports import free_port


def hostvars(rig, k, broker_port: int, extra: dict | None = None, recording=None) -> dict:
    out = {}
    for name, dev in rig.devices.items():
        out[name] = {"edge_audio_prefix": str(dev.prefix), "edge_audio_python": DEVICE_PYTHON,
                     "edge_audio_device_id": f"fleet-{name}", "edge_audio_broker": f"127.0.0.1:{broker_port}",
                     "edge_audio_set": ["audio.source=wav", f"audio.file={recording or k.clip}",
                                        "audio.realtime=false"]}
        out[name].update((extra or {}).get(name, {}))
    return out


def rollout(rig, k, inventory, variables: dict, *more):
    inventory.write_text(rig.inventory(variables))
    return run_cli("deploy", "--inventory", inventory, "--profile", "pi4-usb-coral", "--bundle", k.bundle,
                   "--wheel", k.wheel, "--wheelhouse", k.wheelhouse, "--platform", "x86_64-cp311", "--wave", "100%",
                   *more, module="tools",
                   timeout=1200)


def test_rollout_in_waves_and_a_failing_canary_stops_it(tmp_path, assets, broker, ssh_rig):
    k = kit(assets)
    mosquitto = broker()
    rig = ssh_rig
    for name in ("dev1", "dev2", "dev3"):
        rig.add(name)
    inventory = tmp_path / "inventory.yml"
    t0 = time.monotonic()
    good = rollout(rig, k, inventory, hostvars(rig, k, mosquitto.port, recording=background_wav(assets)),
                   "--calibrate", "15")
    good_s = time.monotonic() - t0
    assert good.code == 0, good.out[-3000:] + good.err[-2000:]
    first = {}
    for name, dev in rig.devices.items():
        first[name] = current_id(dev.prefix)
        assert first[name] and release_info(dev.prefix, first[name])["status"] == "ok"
        assert f'id = "fleet-{name}"' in (dev.prefix / "current" / "config.toml").read_text()
    calibrations = {}
    for name, dev in rig.devices.items():  # each host listened to its own source, after its install
        calibrations[name] = (dev.prefix / "state" / "calibration.toml").read_text()
        assert f"releases/{first[name]}/config.toml" in calibrations[name]
        assert '"Dog" = ' in calibrations[name].split("[detector.thresholds]")[1]
    assert good.out.count("TASK [Calibrate on the site's own audio") == 2  # once per batch
    recap = good.out[good.out.index("PLAY RECAP"):]
    assert all(f"{n}" in recap for n in rig.devices) and "failed=0" in recap
    # two batches: the canary alone, then the rest (--wave 100%)
    batches = good.out.split("PLAY RECAP")[0].split("PLAY [Roll out edge-audio")[1:]
    assert len(batches) == 2 and "dev1" in batches[0] and "dev2" not in batches[0]

    # a new release whose canary cannot reach its broker: its health check fails after the switch
    dead = free_port()
    t0 = time.monotonic()
    bad = rollout(rig, k, inventory, hostvars(rig, k, mosquitto.port, {
        name: {"edge_audio_set": ["audio.source=wav", f"audio.file={k.clip}", "audio.realtime=false",
                                  "detector.threshold=0.6"]} for name in rig.devices} | {
        "dev1": {"edge_audio_broker": f"127.0.0.1:{dead}",
                 "edge_audio_set": ["audio.source=wav", f"audio.file={k.clip}", "audio.realtime=false",
                                    "detector.threshold=0.6"]}}))
    bad_s = time.monotonic() - t0
    assert_one_line_error(bad, 2, "rollout stopped")
    assert "failed health" in bad.out and f"127.0.0.1:{dead}" in bad.out
    canary = rig.devices["dev1"]
    assert current_id(canary.prefix) == first["dev1"]
    rejected = [r for r in release_ids(canary.prefix) if r != first["dev1"]]
    assert len(rejected) == 1 and release_info(canary.prefix, rejected[0])["reason"].startswith("health")
    assert selftest_current(canary.prefix)["exit"] == 0
    for name in ("dev2", "dev3"):  # never reached: same release, nothing uploaded
        dev = rig.devices[name]
        assert current_id(dev.prefix) == first[name] and release_ids(dev.prefix) == [first[name]]
        assert not any((dev.prefix / "incoming").iterdir())
    for name, dev in rig.devices.items():
        assert (dev.prefix / "state" / "calibration.toml").read_text() == calibrations[name]
    print(json.dumps({"good_rollout_s": round(good_s, 1), "stopped_rollout_s": round(bad_s, 1)}))
