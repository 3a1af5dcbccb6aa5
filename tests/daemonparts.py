"""The daemon as a process for integration tests: its config file, a subprocess with its log, and a feeder thread
for a FIFO microphone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from conftest import ROOT
from realparts import FifoMic

SILENCE = np.zeros(16000 * 4, np.int16)


def segment(miaow):
    """A miaow, then four seconds of silence: one Cat event, started and ended."""
    return np.concatenate([miaow, SILENCE])


def write_config(path, model, port, audio: str, mqtt_extra: str = "", detector_extra: str = "",
                 metrics_s: float = 30.0):
    path.write_text(f"""
[device]
id = "kitchen"
[audio]
{audio}
stall_seconds = 5
[model]
path = "{model}"
[detector]
allow = ["Cat", "Dog"]
threshold = 0.5
hold_seconds = 1.0
{detector_extra}
[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min_seconds = 0.2
reconnect_max_seconds = 1.0
{mqtt_extra}
[metrics]
interval_seconds = {metrics_s}
""")
    return path


class DaemonProc:
    def __init__(self, config, env=None, stdin=None):
        self.stderr_path = config.with_suffix(".log")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT,
                                     env=dict(os.environ, **(env or {})), stdin=stdin or subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=open(self.stderr_path, "w"))

    @property
    def log(self) -> str:
        return self.stderr_path.read_text()

    def wait_log(self, pattern: str, timeout_s: float = 30.0) -> re.Match | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log)
            if m or self.proc.poll() is not None:
                return m
            time.sleep(0.05)
        return None

    def terminate(self, timeout_s: float = 5.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def feed(mic: FifoMic, *pieces):
    def run():
        for p in pieces:
            mic.write(p)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t
