"""The test devices themselves: real sshd instances reached by the system ssh client and by Ansible, with host keys
checked (the deploy tests rely on all three)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def ansible_bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install the dev extra (pip install -e '.[dev]', it brings ansible-core)")
    return found


def test_devices_answer_with_their_own_host_keys(ssh_rig):
    for name in ("dev1", "dev2"):
        ssh_rig.add(name)
    for name, device in ssh_rig.devices.items():
        r = ssh_rig.ssh(name, "echo $(id -u) ok")
        assert (r.returncode, r.stdout.strip()) == (0, "0 ok"), r.stderr
    keys = {d.host_key.with_suffix(".pub").read_text().split()[1] for d in ssh_rig.devices.values()}
    assert len(keys) == 2
    assert len(ssh_rig.known_hosts.read_text().splitlines()) == 2


def test_changed_host_key_is_refused_by_the_client(ssh_rig):
    ssh_rig.add("dev1")
    ssh_rig.change_host_key("dev1")
    r = ssh_rig.ssh("dev1", "true")
    assert r.returncode == 255
    assert "Host key verification failed" in r.stderr


def test_ansible_drives_the_devices_through_the_same_ssh_config(ssh_rig, tmp_path):
    for name in ("dev1", "dev2", "dev3"):
        ssh_rig.add(name)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(ssh_rig.inventory({"dev2": {"edge_audio_device_id": "hall"}}))
    r = subprocess.run([ansible_bin("ansible"), "-i", str(inventory), "all", "-o", "-m", "ansible.builtin.command",
                        "-a", "echo {{ inventory_hostname }} {{ edge_audio_device_id | default('-') }}"],
                       capture_output=True, text=True, timeout=180,
                       env={"ANSIBLE_NOCOLOR": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout + r.stderr
    lines = {l.split(" | ")[0]: l for l in r.stdout.splitlines() if " | " in l}
    assert set(lines) == {"dev1", "dev2", "dev3"}
    assert "dev2 hall" in lines["dev2"] and "dev1 -" in lines["dev1"]
    facts = subprocess.run([ansible_bin("ansible"), "-i", str(inventory), "dev3", "-m", "ansible.builtin.setup",
                            "-a", "filter=ansible_architecture"], capture_output=True, text=True, timeout=180,
                           env={"ANSIBLE_NOCOLOR": "1", "PATH": "/usr/bin:/bin"})
    assert facts.returncode == 0, facts.stdout + facts.stderr
    payload = json.loads(facts.stdout.split("=>", 1)[1])
    assert payload["ansible_facts"]["ansible_architecture"] in ("x86_64", "aarch64")
