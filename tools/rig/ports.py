"""Loopback ports and child processes: the pieces every part of the rig starts with."""

from __future__ import annotations

import socket
import subprocess
import time


class RigError(RuntimeError):
    """A part that could not be started: one line."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 5.0) -> None:
    if not wait_until(lambda: _listening(port), timeout_s):
        raise RigError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within timeout_s; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(predicate, timeout_s: float, step_s: float = 0.02) -> bool:
    """Poll `predicate()` until it is true or `timeout_s` has passed; its last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


def have(*commands: str) -> bool:
    """Every one of these commands is on PATH."""
    import shutil
    return all(shutil.which(c) for c in commands)
