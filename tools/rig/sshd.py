"""OpenSSH "devices" to deploy to: Debian's sshd on free loopback ports, each with its own throwaway host
key, root login with a throwaway user key, a known_hosts file holding every host key, and an ssh_config that the
system `ssh` (and Ansible, through `-F`) uses to reach them as `dev1`, `dev2`, ... or as 127.0.0.1:PORT.

Each device also gets its own prefix folder: the devices share this machine's filesystem, so a prefix is what
keeps their releases apart. Host keys are verified exactly as on a real network (StrictHostKeyChecking yes).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .ports import RigError, free_port, have, stop_process, wait_for_port

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself and insists on an absolute path
PRIVSEP_DIR = Path("/run/sshd")


def have_sshd() -> str:
    """Why a real sshd cannot run here ("" when it can)."""
    if not Path(SSHD).is_file():
        return "openssh-server is not installed (apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "sshd with root login needs the tests to run as root"
    if not have("ssh", "ssh-keygen"):
        return "openssh-client is not installed"
    return ""


def _keygen(path: Path, comment: str) -> str:
    for p in (path, path.with_suffix(".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   capture_output=True)
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class Device:
    name: str
    port: int
    folder: Path
    prefix: Path
    proc: subprocess.Popen | None = None

    @property
    def host_key(self) -> Path:
        return self.folder / "ssh_host_ed25519_key"

    @property
    def address(self) -> str:
        """The USER@HOST:PORT form a deploy command takes."""
        return f"root@127.0.0.1:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        return f"[127.0.0.1]:{self.port}"


class SshRig:
    """Several sshd "devices" and the client files that reach them. Use as a context manager or call stop()."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self.user_key = folder / "id_ed25519"
        self.authorized_keys = folder / "authorized_keys"
        self.authorized_keys.write_text(_keygen(self.user_key, "edge-audio tests") + "\n")
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text("")
        self.ssh_config = folder / "ssh_config"
        self.devices: dict[str, Device] = {}
        self._write_client_config()

    def __enter__(self) -> "SshRig":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- devices --------------------------------------------------------------------------------------------------
    def add(self, name: str) -> Device:
        folder = self.folder / name
        folder.mkdir(exist_ok=True)
        device = Device(name, free_port(), folder, folder / "prefix")
        _keygen(device.host_key, f"{name} host key")
        self.devices[name] = device
        self._write_sshd_config(device)
        self._start(device)
        self._record_host_key(device)
        self._write_client_config()
        return device

    def change_host_key(self, name: str) -> None:
        """The device comes back with a new host key (reinstalled, or someone in the middle); known_hosts keeps
        the old one."""
        device = self.devices[name]
        self._stop(device)
        _keygen(device.host_key, f"{name} new host key")
        self._start(device)

    def stop_device(self, name: str) -> None:
        self._stop(self.devices[name])

    def stop(self) -> None:
        for device in self.devices.values():
            self._stop(device)

    # -- client side ----------------------------------------------------------------------------------------------
    def ssh(self, name: str, command: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.ssh_config), name, command], capture_output=True, text=True,
                              timeout=timeout_s)

    def inventory(self, hostvars: dict[str, dict]) -> str:
        """An Ansible YAML inventory of the devices, reached through this rig's ssh_config (JSON is valid YAML)."""
        import json
        hosts = {name: dict(hostvars.get(name, {})) for name in self.devices}
        common = {"ansible_connection": "ssh", "ansible_user": "root",
                  "ansible_ssh_common_args": f"-F {self.ssh_config}",
                  "ansible_python_interpreter": "/usr/bin/python3"}
        return json.dumps({"edge_audio_devices": {"hosts": hosts, "vars": common}}, indent=2)

    # -- internals ------------------------------------------------------------------------------------------------
    def _write_sshd_config(self, device: Device) -> None:
        (device.folder / "sshd_config").write_text("\n".join([
            f"ListenAddress 127.0.0.1:{device.port}",
            f"HostKey {device.host_key}",
            "PidFile none",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the key files live in a pytest temporary folder
            "Subsystem sftp internal-sftp",  # scp and Ansible copy over SFTP
            "MaxStartups 50",
            "MaxSessions 50",
            "LogLevel ERROR",
        ]) + "\n")

    def _start(self, device: Device) -> None:
        log = open(device.folder / "sshd.log", "ab")
        device.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(device.folder / "sshd_config")],
                                       stdout=log, stderr=log)
        try:
            wait_for_port(device.port, 10.0)
        except RigError:
            device.proc.kill()
            raise RigError(f"sshd for {device.name} did not start: "
                               f"{(device.folder / 'sshd.log').read_text()[-500:]}") from None

    @staticmethod
    def _stop(device: Device) -> None:
        if device.proc is not None:
            stop_process(device.proc)
        device.proc = None
        time.sleep(0.05)

    def _record_host_key(self, device: Device) -> None:
        kind, key = device.host_key.with_suffix(".pub").read_text().split()[:2]
        with open(self.known_hosts, "a") as f:
            f.write(f"{device.known_hosts_name} {kind} {key}\n")

    def _write_client_config(self) -> None:
        blocks = [f"Host {d.name}\n  HostName 127.0.0.1\n  Port {d.port}\n  User root\n"
                  for d in self.devices.values()]
        blocks.append("\n".join([
            "Host *",
            f"  IdentityFile {self.user_key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {self.known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  ConnectTimeout 10",
            "  LogLevel ERROR",
        ]) + "\n")
        self.ssh_config.write_text("\n".join(blocks))
