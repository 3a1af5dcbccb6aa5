"""The daemon as the rig runs it: its config written as TOML from plain values (edge.core.tomltext, so strings and
paths are quoted properly), `edge-audio run --config CONFIG` as a child process with its log in a file, and the
/proc figures of a process (CPU time, peak RSS)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from edge.core.tomltext import dumps
from tools import REPO

from .ports import RigError, stop_process, wait_until

SECTIONS = ("device", "audio", "model", "detector", "mqtt", "metrics", "calibration")


def _plain(v):
    """Paths as strings, in tables and lists too; everything else as it is."""
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def daemon_config_text(**sections: dict | None) -> str:
    """A daemon config: one keyword per table, e.g. audio={"source": "stdin"}, mqtt={"enabled": False}; a table
    given as None is left out. Tables come in the order of the config reference, any others after them."""
    order = [s for s in SECTIONS if s in sections] + [s for s in sections if s not in SECTIONS]
    return dumps({name: _plain(sections[name]) for name in order if sections[name] is not None})


def write_daemon_config(path: Path, **sections: dict | None) -> Path:
    """daemon_config_text(**sections) written to `path`; returns `path`."""
    path = Path(path)
    path.write_text(daemon_config_text(**sections))
    return path


def bench_daemon_config(path: Path, port: int, audio: dict, model, spool: Path, hop_s: float,
                        detector: dict | None = None, device_id: str = "bench", clips: dict | None = None) -> Path:
    """What the benchmarks run: the daemon on the CPU delegate at hop `hop_s`, publishing to 127.0.0.1:`port` (and
    retrying fast), its spool at `spool`; `audio`, `detector` and `clips` are those tables ([clips] left out when
    None)."""
    return write_daemon_config(
        path, device={"id": device_id}, audio=audio, model={"path": model, "delegate": "cpu", "hop_seconds": hop_s},
        detector=detector or {},
        mqtt={"host": "127.0.0.1", "port": port, "reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1.0,
              "spool_file": spool},
        metrics={"interval_seconds": 30}, clips=clips)


def kit_env(**extra: str) -> dict:
    """The environment a child process of the kit gets: this one, the repository on PYTHONPATH, one OpenBLAS
    thread (the daemon's own setting), then `extra`."""
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)


class DaemonProcess:
    """`edge-audio run --config CONFIG` as a child process, from the repository root, one OpenBLAS thread; its
    stderr (the log) in CONFIG with the suffix .log; stdin a pipe when `stdin_pipe` (proc.stdin)."""

    def __init__(self, config: Path, env: dict | None = None, stdin_pipe: bool = False):
        self.log_path = Path(config).with_suffix(".log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                                     cwd=REPO, env=kit_env(**(env or {})),
                                     stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def feed(self, pcm) -> None:
        """Raw samples (a NumPy array) into the daemon's stdin."""
        self.proc.stdin.write(pcm.tobytes())
        self.proc.stdin.flush()

    def wait_log(self, pattern: str, timeout_s: float = 30.0) -> re.Match | None:
        """The first match of `pattern` in the log, once it is there; None after timeout_s or once the daemon
        has exited without it."""
        wait_until(lambda: re.search(pattern, self.log) is not None or not self.alive(), timeout_s, 0.05)
        return re.search(pattern, self.log)

    def terminate(self, timeout_s: float = 5.0) -> int:
        """SIGTERM, as systemd stops it; its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL if it is still running (a test's cleanup)."""
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self._close()

    def stop(self, timeout_s: float = 10.0) -> int:
        """Its input ended, then SIGTERM (SIGKILL after timeout_s); its exit code."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        stop_process(self.proc, timeout_s)
        self._close()
        return self.proc.returncode

    def log_tail(self, lines: int = 3) -> str:
        return " | ".join(self.log.strip().splitlines()[-lines:])

    def _close(self) -> None:
        if not self._log.closed:
            self._log.close()


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, all its live threads, in nanosecond resolution (/proc/PID/task/*/schedstat; the
    clock-tick figures in /proc/PID/stat are 10 ms steps, too coarse for a process using 1 % of a core)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def process_peak_rss_mb(pid: int) -> float:
    """VmHWM of a process in MiB: the most resident memory it ever had (file-backed pages included)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RigError(f"no VmHWM for process {pid}")
