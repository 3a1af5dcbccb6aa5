"""One device over the system OpenSSH client: ~/.ssh/config, agents, jump hosts and known_hosts all apply, host
keys are always verified (nothing here turns checking off). One connection is shared by every command of a deploy
(ControlMaster). Every value that reaches the device's shell is a quoted positional argument of a fixed script.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from edge.core.errors import InputError

TARGET = re.compile(r"(?:(?P<user>[A-Za-z_][A-Za-z0-9._-]*)@)?(?P<host>[A-Za-z0-9][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\])"
                    r"(?::(?P<port>[0-9]{1,5}))?")
# Every remote script starts here: $1 is the prefix; "~/..." becomes "$HOME/..." (the quoting keeps ~ literal).
PRELUDE = 'set -e; p=$1; shift; case $p in "~/"*) p="$HOME/${p#"~/"}";; esac; '
PROBE = ("import json, os, platform, sys; print(json.dumps({'machine': platform.machine(), 'python': "
         "'%d.%d' % sys.version_info[:2], 'glibc': platform.libc_ver()[1], 'uid': os.getuid(), "
         "'executable': sys.executable}))")


class RemoteError(InputError):
    """The device could not be reached or refused; the message is one line."""


@dataclass(frozen=True)
class Target:
    user: str | None
    host: str
    port: int | None

    @classmethod
    def parse(cls, text: str) -> "Target":
        m = TARGET.fullmatch(text)
        if not m or (m.group("port") and not 0 < int(m.group("port")) < 65536):
            raise InputError(f"target {text!r}: expected USER@HOST[:PORT] or a host name from your ssh config")
        return cls(m.group("user"), m.group("host").strip("[]"), int(m.group("port")) if m.group("port") else None)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user + '@' if self.user else ''}{host}{':' + str(self.port) if self.port else ''}"


class Remote:
    def __init__(self, target: Target, ssh_config: str | None = None, label: str | None = None):
        self.target = target
        self.label = label or str(target)
        self._control = tempfile.mkdtemp(prefix="edge-audio-ssh-")
        self._base = ["ssh", *(["-F", ssh_config] if ssh_config else []), "-o", "BatchMode=yes",
                      "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}/%C", "-o", "ControlPersist=120",
                      *(["-p", str(target.port)] if target.port else []),
                      *(["-l", target.user] if target.user else []), "--", target.host]

    def argv(self, script: str, prefix: str, *args: str) -> list[str]:
        """The ssh command line that runs `script` under sh with the prefix and args as quoted "$@"."""
        return [*self._base, "sh -c " + shlex.quote(PRELUDE + script) + " sh " + shlex.join([prefix, *args])]

    def run(self, script: str, prefix: str, *args: str, stdin=None, stream: bool = False,
            timeout_s: float = 1800) -> str:
        """Run and return stdout. With stream, the device's stderr lines are shown as they come (progress)."""
        proc = subprocess.Popen(self.argv(script, prefix, *args), stdin=stdin if stdin is not None else
                                subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err_lines: list[str] = []

        def pump():
            for line in proc.stderr:
                err_lines.append(line.rstrip("\n"))
                if stream and ": error: " not in line:  # the device's error line becomes this command's own
                    print(f"  {self.label}: {line.rstrip()}", file=sys.stderr, flush=True)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            out = proc.stdout.read()
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RemoteError(f"{self.label}: no answer within {timeout_s:g} s") from None
        reader.join(5)
        if proc.returncode == 255:
            raise RemoteError(ssh_failure(self.label, self.target, err_lines))
        if proc.returncode != 0:
            raise RemoteError(f"{self.label}: {device_error(err_lines, proc.returncode)}")
        return out

    def probe(self, python: str) -> dict:
        """Machine, Python version, C library and uid of the device's interpreter."""
        script = 'if ! command -v "$1" >/dev/null; then echo "no $1 on the device (apt-get install python3 ' \
                 'python3-venv)" >&2; exit 3; fi; exec "$1" -c "$2"'
        out = self.run(script, "/", python, PROBE, timeout_s=60)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RemoteError(f"{self.label}: {python} did not describe itself ({out.strip()[:80]!r})") from None

    def upload(self, folder: Path, prefix: str, name: str) -> None:
        """Copy `folder` to PREFIX/incoming/NAME with tar over this connection (no scp/rsync needed)."""
        import tarfile
        argv = self.argv('d="$p/incoming/$1"; mkdir -p "$d"; cd "$d"; exec tar -xf -', prefix, name)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
                for item in sorted(folder.iterdir()):
                    tar.add(item, arcname=item.name)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read().decode(errors="replace").splitlines()
        proc.wait()
        if proc.returncode == 255:
            raise RemoteError(ssh_failure(self.label, self.target, err))
        if proc.returncode != 0:
            raise RemoteError(f"{self.label}: upload failed: {device_error(err, proc.returncode)}")

    def close(self) -> None:
        subprocess.run([*self._base[:-2], "-O", "exit", "--", self.target.host], capture_output=True)
        shutil.rmtree(self._control, ignore_errors=True)


def device_error(lines: list[str], code: int) -> str:
    """The one line that explains a failed device step: its own 'error:' line, else the last line."""
    useful = [l for l in lines if l.strip()]
    errors = [l for l in useful if "error:" in l]
    line = (errors or useful or [f"exit status {code}"])[-1]
    return line.split("error: ", 1)[1] if "error: " in line else line


def ssh_failure(label: str, target: Target, lines: list[str]) -> str:
    """One line for ssh's own failures (exit 255), without its banner."""
    text = "\n".join(lines)
    host = f"[{target.host}]:{target.port}" if target.port else target.host
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or re.search(r"Host key for \S+ has changed", text):
        found = re.search(r"ssh-keygen -f .* -R .*", text)
        remove = found.group(0) if found else f"ssh-keygen -R {shlex.quote(host)}"
        return (f"{label}: the host key changed since it was recorded in known_hosts: refusing to connect (if the "
                f"device was reinstalled, check the new key, then: {remove})")
    if "No matching host key" in text or re.search(r"No \S+ host key is known", text) or \
            "Host key verification failed" in text:
        return (f"{label}: its host key is not in known_hosts: connect once with ssh, check the fingerprint, "
                "then deploy")
    for needle, say in (("Connection refused", "connection refused (is sshd running, is the port right?)"),
                        ("Could not resolve hostname", "host name not found"),
                        ("timed out", "connection timed out"),
                        ("No route to host", "no route to host"),
                        ("Permission denied", "login refused (is your key in the device's authorized_keys?)")):
        if needle in text:
            return f"{label}: {say}"
    last = [l for l in lines if l.strip()]
    return f"{label}: ssh failed: {last[-1] if last else 'exit status 255'}"
