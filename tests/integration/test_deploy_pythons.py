"""The Python versions pyproject.toml declares, each proven by a real deploy: a device whose interpreter is that
version gets an offline wheelhouse built for it, installs the release (tomli below 3.11), and passes selftest
(config, bundle hashes, model load, the known clip classified as Cat); its daemon then comes online on a real
broker. 3.11 is the rest of the suite."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

from conftest import REQUIRE, ROOT, run_cli
from realdeploy import current_id, kit, release_daemon_online, selftest_current, wav_settings

OTHER_VERSIONS = ("3.9", "3.10", "3.12", "3.13")


def interpreter(version: str) -> str | None:
    """A CPython of that version on this machine (pyenv's, or the system's)."""
    found = sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}"))
    found += [p for p in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}") if Path(p).is_file()]
    return found[0] if found else None


def test_requires_python_names_exactly_what_is_tested():
    text = (ROOT / "pyproject.toml").read_text()
    spec = re.search(r'requires-python = "(.*)"', text).group(1)
    assert spec == ">=3.9,<3.14"
    assert "tomli>=1.1; python_version < '3.11'" in text


@pytest.mark.parametrize("version", OTHER_VERSIONS)
def test_a_device_with_this_python_installs_offline_and_runs(version, tmp_path, assets, ssh_rig, broker):
    python = interpreter(version)
    if python is None:  # requires-python claims this version: CI must prove it
        (pytest.fail if REQUIRE else pytest.skip)(f"no Python {version} on this machine to play the device")
    k = kit(assets)
    dev = ssh_rig.add("dev")
    mosquitto = broker()
    # pyalsaaudio is compiled on the device for these versions; leave it out to keep the suite short
    r = run_cli("deploy", dev.address, "--prefix", dev.prefix, "--profile", "pi4-usb-coral", "--bundle",
                k.bundle, "--broker", f"127.0.0.1:{mosquitto.port}", "--device-id", f"py{version}",
                *wav_settings(k, live=True), "--extras", "litert,mqtt", "--ssh-config", ssh_rig.ssh_config,
                "--wheel", k.wheel, "--wheelhouse", k.wheelhouse, "--python", python, module="tools", timeout=900)
    assert r.code == 0, r.err
    assert f"Python {version}" in r.err
    venv_python = next((dev.prefix / "current" / "venv" / "lib").iterdir()).name
    assert venv_python == f"python{version}"
    report = selftest_current(dev.prefix)
    assert report["exit"] == 0, report
    assert current_id(dev.prefix)
    run = release_daemon_online(dev.prefix, mosquitto)
    assert run["retained"] and run["exit"] == 0 and run["status"][0] == "online", run["log"][-600:]
