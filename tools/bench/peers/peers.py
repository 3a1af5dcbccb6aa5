"""Peers: other libraries' YAMNet audio classifiers, each installed in its own virtual environment and run in
its own process, so that neither their dependencies nor their memory mix with the kit's.

Every failure (a wheel that will not install, a missing system library, a crash) becomes a PeerError with
one line that says what happened; the side-by-side bench prints it and goes on.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
INSTALL_TIMEOUT_S = 1200


class PeerError(Exception):
    """One line: what failed and, where known, how to fix it."""


@dataclass(frozen=True)
class Peer:
    name: str  # folder name under out/peers/
    label: str  # what the table calls it
    requirement: str  # pinned pip requirement
    script: str  # peer script in this folder
    check_import: str  # a statement that proves the install works
    system_libs: tuple = ()  # (soname for ctypes.util.find_library, Debian package)


MEDIAPIPE = Peer("mediapipe", "MediaPipe AudioClassifier", "mediapipe==1.2.2", "peer_mediapipe.py",
                 "from mediapipe.tasks.python import audio")
TASKLIB = Peer("tflite-support", "Task Library AudioClassifier", "tflite-support==0.4.4", "peer_tasklib.py",
               "from tflite_support.task import audio; from tflite_support.metadata_writers import audio_classifier",
               (("usb-1.0", "libusb-1.0-0"),))
PEERS = {"mediapipe": MEDIAPIPE, "tasklib": TASKLIB}


def _last_line(text: str) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("WARNING")]
    errors = [l for l in lines if l.startswith(("ERROR", "error", "ImportError", "ModuleNotFoundError"))]
    return (errors or lines or ["(no output)"])[-1][:300]


def ensure_system_libs(peer: Peer, say: Callable[[str], None]) -> None:
    """Install missing Debian packages when running as root with apt-get; otherwise say what to install."""
    missing = [pkg for soname, pkg in peer.system_libs if ctypes.util.find_library(soname) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PeerError(f"needs Debian's {' '.join(missing)}: sudo apt-get install {' '.join(missing)}")
    say(f"{peer.name}: installing {' '.join(missing)} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    res = subprocess.run(["apt-get", "install", "-y", "-q", *missing], capture_output=True, text=True, env=env,
                         timeout=INSTALL_TIMEOUT_S)
    if res.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=INSTALL_TIMEOUT_S)
        res = subprocess.run(["apt-get", "install", "-y", "-q", *missing], capture_output=True, text=True, env=env,
                             timeout=INSTALL_TIMEOUT_S)
    if res.returncode != 0:
        raise PeerError(f"apt-get install {' '.join(missing)} failed: {_last_line(res.stderr + res.stdout)}")


def ensure_venv(peer: Peer, root: Path, say: Callable[[str], None], python: str = sys.executable) -> Path:
    """root/<peer>/.venv with the pinned requirement; returns its python. Reuses a venv that already works."""
    folder = root / peer.name
    venv = folder / ".venv"
    py = venv / "bin" / "python"
    marker = folder / "installed.txt"
    log = folder / "install.log"
    ensure_system_libs(peer, say)
    if py.exists() and marker.exists() and marker.read_text().strip() == peer.requirement:
        _check_import(peer, py)
        return py
    folder.mkdir(parents=True, exist_ok=True)
    say(f"{peer.name}: creating {venv} and installing {peer.requirement} (once; log in {log})")
    try:
        res = subprocess.run([python, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True,
                             timeout=INSTALL_TIMEOUT_S)
        if res.returncode != 0:
            raise PeerError(f"cannot create a virtual environment: {_last_line(res.stderr + res.stdout)}")
        res = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", peer.requirement],
                             capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PeerError(f"installing {peer.requirement} took more than {INSTALL_TIMEOUT_S} s") from None
    log.write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise PeerError(f"pip install {peer.requirement} failed: {_last_line(res.stderr + res.stdout)}")
    _check_import(peer, py)
    marker.write_text(peer.requirement + "\n")
    return py


def _check_import(peer: Peer, py: Path) -> None:
    res = subprocess.run([str(py), "-c", peer.check_import], capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise PeerError(f"{peer.requirement} installed but does not import: {_last_line(res.stderr)}")


def write_metadata_model(tasklib_python: Path, model: Path, class_map: Path, out: Path) -> Path:
    """A copy of `model` with audio-classifier metadata, written by the Task Library's metadata writer."""
    res = subprocess.run([str(tasklib_python), str(HERE / "write_metadata.py"), str(model), str(class_map), str(out)],
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0 or not out.is_file():
        raise PeerError(f"the metadata writer failed: {_last_line(res.stderr + res.stdout)}")
    return out


class Runner:
    """A runner process in --serve mode (a peer script, or the kit's runner): started once, then one timed round
    per run() call, so the bench can alternate runners round by round. Every failure is a PeerError."""

    def __init__(self, name: str, cmd: list, env: dict | None = None, cwd: Path | None = None,
                 start_timeout_s: float = 300.0):
        self.name = name
        self.rounds: list[dict] = []
        # stderr into a file, not a pipe nobody reads while the runner lives: a chatty library (glog) would fill
        # the pipe and block the runner until the bench gives up on it
        self._stderr = tempfile.TemporaryFile("w+")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                         text=True, env=env, cwd=cwd)
        except OSError as exc:
            raise PeerError(f"cannot run {cmd[0]}: {exc.strerror}") from None
        self.info = self._answer(start_timeout_s)
        if not self.info.get("ready"):
            self.close()
            raise PeerError(f"did not start: {self.info}")

    def _answer(self, timeout_s: float) -> dict:
        import selectors
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout_s):
                self.close()
                raise PeerError(f"no answer within {timeout_s:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            err = self._errors() if self.proc.poll() is not None or self._ended() else ""
            raise PeerError(_last_line(err) + f" (exit {self.proc.poll()})")
        try:
            return json.loads(line)
        except ValueError:
            raise PeerError(f"printed no JSON result: {line.strip()[:200]}") from None

    def _errors(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def _ended(self) -> bool:
        try:
            self.proc.wait(5)
            return True
        except subprocess.TimeoutExpired:
            return False

    def run(self, seconds: float) -> dict:
        try:
            self.proc.stdin.write(f"run {seconds}\n")
            self.proc.stdin.flush()
        except OSError:
            raise PeerError(f"stopped ({_last_line(self._errors())})") from None
        result = self._answer(seconds * 4 + 60)
        self.rounds.append(result)
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


def peer_command(peer: Peer, python: Path, model: Path, audio: Path, hop_seconds: float, threads: int = 1) -> list:
    return [str(python), str(HERE / peer.script), "--model", str(model), "--audio", str(audio),
            "--hop", str(hop_seconds), "--threads", str(threads), "--serve"]


def peer_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run_peer(peer: Peer, python: Path, model: Path, audio: Path, seconds: float, hop_seconds: float,
             threads: int = 1, timeout: Optional[float] = None) -> dict:
    """Run the peer's script in its venv; its JSON result, or PeerError with its one-line reason."""
    cmd = [str(python), str(HERE / peer.script), "--model", str(model), "--audio", str(audio),
           "--seconds", str(seconds), "--hop", str(hop_seconds), "--threads", str(threads)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or seconds * 4 + 300, env=peer_env())
    except subprocess.TimeoutExpired:
        raise PeerError(f"did not finish within {timeout or seconds * 4 + 300:.0f} s") from None
    except OSError as exc:
        raise PeerError(f"cannot run {python}: {exc.strerror}") from None
    if res.returncode != 0:
        raise PeerError(_last_line(res.stderr) + f" (exit {res.returncode})")
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise PeerError(f"printed no JSON result: {_last_line(res.stdout + res.stderr)}") from None
