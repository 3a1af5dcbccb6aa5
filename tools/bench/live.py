"""Real parts for the host tools that measure the daemon as it runs: a Mosquitto broker on a free loopback port,
the daemon as a process with its own config file, a subscriber that timestamps every message it receives, and
the /proc figures of a process (CPU time, peak RSS)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class LiveError(RuntimeError):
    """A part that could not be started: one line."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise LiveError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s")


def stop_process(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within timeout_s; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Broker:
    """Mosquitto on 127.0.0.1, anonymous, no persistence, its log in `folder`."""

    def __init__(self, folder: Path):
        if shutil.which("mosquitto") is None:
            raise LiveError("mosquitto is not installed (sudo apt-get install mosquitto; make test installs it)")
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = folder / "mosquitto.conf"
        user = ["user root"] if os.geteuid() == 0 else []
        conf.write_text("\n".join([f"listener {self.port} 127.0.0.1", *user, "persistence false",
                                   "allow_anonymous true", "log_dest stderr", "log_type error"]) + "\n")
        self._log = open(folder / "broker.log", "ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=self._log)
        try:
            wait_for_port(self.port)
        except LiveError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


class Subscriber:
    """Records (arrival time on time.monotonic(), topic, payload) for every message under `topic`."""

    def __init__(self, port: int, topic: str = "#"):
        import paho.mqtt.client as paho
        self.messages: list[tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        if not subscribed.wait(5):
            raise LiveError("the subscriber's subscription was not acknowledged")

    def _on_message(self, client, userdata, msg):
        now = time.monotonic()
        with self._lock:
            self.messages.append((now, msg.topic, msg.payload))

    def events(self) -> list[tuple[float, dict]]:
        """(arrival time, payload) of every event message so far."""
        with self._lock:
            return [(t, json.loads(p)) for t, topic, p in self.messages if topic.endswith("/events")]

    def wait_for(self, suffix: str, payload: bytes, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if any(t.endswith(suffix) and p == payload for _, t, p in self.messages):
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def daemon_config(path: Path, port: int, audio: str, model: str, spool: Path, hop_s: float, detector: str = "",
                  device_id: str = "bench") -> Path:
    """A daemon config on the CPU delegate at hop `hop_s`: `audio` and `detector` are the lines of those sections."""
    path.write_text(f"""[device]
id = "{device_id}"
[audio]
{audio}
[model]
path = "{model}"
delegate = "cpu"
hop_seconds = {hop_s}
[detector]
{detector}
[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min_seconds = 0.2
reconnect_max_seconds = 1.0
spool_file = "{spool}"
[metrics]
interval_seconds = 30
""")
    return path


class DaemonProcess:
    """`edge-audio run --config CONFIG` as a child process (stdin: a pipe when `stdin_pipe`), its log in a file."""

    def __init__(self, config: Path, stdin_pipe: bool = False):
        self.log_path = config.with_suffix(".log")
        self._log = open(self.log_path, "w")
        full_env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT,
                                     env=full_env, stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        stop_process(self.proc, timeout_s)
        self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 3) -> str:
        return " | ".join(self.log_path.read_text().strip().splitlines()[-lines:])


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
    raise LiveError(f"no VmHWM for process {pid}")
