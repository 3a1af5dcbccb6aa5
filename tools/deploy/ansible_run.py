"""Ansible as the fleet rollout runs it: `ansible` and `ansible-playbook` from this Python's environment (else
PATH), with the edge_audio_events stdout callback (firmware_configs/ansible/callback_plugins): every event is one
JSON line, handed to the caller as a dict, and everything Ansible writes (those lines, its warnings and errors) goes
to a log file. The screen gets only what the caller makes of the events."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge.core.errors import InputError
from tools import REPO

PLAYBOOK = REPO / "firmware_configs" / "ansible" / "deploy.yml"
CALLBACKS = PLAYBOOK.parent / "callback_plugins"
LOGS = Path("out/deploy")


def find(tool: str) -> str:
    beside = Path(sys.executable).parent / tool
    found = str(beside) if beside.is_file() else shutil.which(tool)
    if not found:
        raise InputError(f"{tool} not found: pip install 'ansible-core>=2.14' (it is in the dev extra)")
    return found


def environment() -> dict:
    """Ansible's settings for a run whose output is read by the kit (the user's other settings stay)."""
    plugins = os.pathsep.join(filter(None, [str(CALLBACKS), os.environ.get("ANSIBLE_CALLBACK_PLUGINS")]))
    return dict(os.environ, ANSIBLE_STDOUT_CALLBACK="edge_audio_events", ANSIBLE_CALLBACK_PLUGINS=plugins,
                ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
                ANSIBLE_INVENTORY_UNPARSED_FAILED="1", PYTHONUNBUFFERED="1")


class Log:
    """out/deploy/fleet-<time>.log: every line Ansible wrote, in the order it came."""

    def __init__(self, folder: Path = LOGS):
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.path = folder / f"fleet-{stamp}-{os.getpid()}.log"
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        with self._lock:
            self._file.write(line if line.endswith("\n") else line + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def run(cmd: list[str], log: Log, on_event) -> tuple[int, list[str]]:
    """Run `cmd` (an ansible or ansible-playbook command line) and call on_event(dict) for each event as it comes;
    returns its exit status and what it wrote on stderr."""
    log.write("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", env=environment())
    errors: list[str] = []

    def drain() -> None:
        for line in proc.stderr:
            log.write(line)
            errors.append(line.rstrip("\n"))
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    for line in proc.stdout:
        log.write(line)
        try:
            event = json.loads(line)
        except ValueError:
            continue  # another callback's words: the log has them
        if isinstance(event, dict) and "event" in event:
            on_event(event)
    code = proc.wait()
    reader.join()
    log.write(f"# exit status {code}")
    return code, errors


def first_error(stderr: list[str]) -> str:
    """The line that says why Ansible stopped on its own (a playbook or inventory it could not read)."""
    marks = ("[ERROR]", "ERROR!")
    error = next((l.strip() for l in stderr if l.startswith(marks)), "")
    cause = next((l.split("]:", 1)[1].strip() for l in stderr if l.startswith("[WARNING]: Failed to parse")), "")
    if error and cause:
        return f"{error} ({cause})"
    return error or cause or next((l.strip() for l in reversed(stderr) if l.strip()), "no output")
