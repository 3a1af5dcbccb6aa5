"""`python -m tools demo`: the whole chain on this machine. A local Mosquitto on a free loopback port, the
daemon replaying sample recordings at real time as if they came from a microphone, and the monitor printing
the events it receives."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.app.command import add_command
from edge.core.errors import InputError
from edge.core.wavfile import read_wav, write_wav

from tools.rig.broker import Broker
from tools.rig.daemon import write_daemon_config
from tools.rig.ports import RigError, stop_process


def run_demo(audio_dir: Path, bundle: str | None, realtime: bool) -> int:
    pieces = [read_wav(audio_dir / name).samples[:, 0] for name in ("miaow_16k.wav", "speech_whistling2.wav")]
    work = Path(tempfile.mkdtemp(prefix="edge-audio-demo-"))
    gap = np.zeros(16000 * 2, np.int16)
    write_wav(work / "demo.wav", np.concatenate([gap, pieces[0], gap, pieces[1], gap]), 16000)
    try:
        broker = Broker(work / "broker")
    except RigError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise InputError(f"the demo's broker: {exc}") from None
    port = broker.port
    write_daemon_config(work / "edge.toml", device={"id": "demo"},
                        audio={"source": "wav", "file": work / "demo.wav", "realtime": realtime},
                        model={"path": bundle or ""},
                        detector={"allow": ["Cat", "Speech", "Whistle"], "threshold": 0.5, "hold_seconds": 1.0},
                        mqtt={"host": "127.0.0.1", "port": port})
    edge = [sys.executable, "-m", "edge"]
    monitor = None
    try:
        print(f"broker: mosquitto on 127.0.0.1:{port}; daemon config: {work / 'edge.toml'}", file=sys.stderr)
        monitor = subprocess.Popen([*edge, "monitor", "--port", str(port)])
        time.sleep(0.5)
        status = subprocess.call([*edge, "run", "--config", str(work / "edge.toml"), "--log-level", "warning"])
        time.sleep(0.5)
        return status
    finally:
        if monitor is not None and monitor.poll() is None:
            monitor.send_signal(signal.SIGINT)  # the monitor ends quietly on Ctrl-C
            try:
                monitor.wait(3)
            except subprocess.TimeoutExpired:
                stop_process(monitor)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def add_parser(sub) -> None:
    p = add_command(sub, "demo", "the whole chain: local broker, daemon on sample audio, monitor",
                    "Start a local Mosquitto on a free loopback port, run the daemon on sample recordings replayed "
                    "like a microphone, and print what the monitor receives.",
                    ["python -m tools demo --audio out/audio"])
    p.add_argument("--audio", default="out/audio", metavar="DIR", help="folder with miaow_16k.wav and "
                                                                         "speech_whistling2.wav (python -m tools "
                                                                         "fetch samples)")
    p.add_argument("--model", metavar="BUNDLE", help="model bundle (default: the installed one)")
    p.add_argument("--fast", action="store_true", help="do not pace the replay at real time")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    return run_demo(Path(args.audio), args.model, not args.fast)
