"""`edge-audio release calibrate`: the site calibration as a release step, the one `python -m tools deploy
--calibrate M` and the Ansible playbook both run on a device.

    1. the current release, and the file its daemon loads a calibration from (`calibration.file`, else
       PREFIX/state/calibration.toml: outside the releases, so it survives deploys and rollbacks)
    2. stop the service if it runs: it holds the microphone
    3. `edge-audio calibrate` of the current release, M minutes of the audio source its config names; what it
       prints streams to stderr as it comes
    4. the result replaces the calibration file (fsync, then rename(2)), and only when at least one label was
       calibrated: a failed, empty or interrupted run (an error, SIGTERM, SIGHUP, Ctrl-C, the SSH connection
       gone) leaves the previous calibration in place
    5. start the service again, whatever happened in 3 and 4: the daemon loads the calibration when it starts

It runs from the release's own venv (PREFIX/current/venv/bin/edge-audio release calibrate): the config is read with
the daemon's own loader.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ...core.errors import EdgeAudioError, InputError
from ...core.files import commit_file
from .store import Layout, current_release
from .service import ServiceError

GRACE_SECONDS = 300.0  # beyond its minutes, how long a calibration may take before it is stopped (model load, files)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Interrupted(EdgeAudioError):
    """The step was stopped from outside (a signal, the connection gone): nothing was replaced."""


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class CalibrationJob:
    """Stop the service, calibrate the current release, keep the result only if it is one, start the service."""

    def __init__(self, layout: Layout, service, say, relay=_to_stderr):
        self.layout = layout
        self.service = service  # edge.app.release.service.Service, or anything with the same methods
        self.say = say
        self.relay = relay  # each line `edge-audio calibrate` prints

    def target(self, config: Path) -> Path:
        """Where the daemon of this config loads its calibration from (what `calibration.file` says)."""
        from ...config import CALIBRATION_FILE, calibration_target, load_config
        target = calibration_target(load_config(str(config)).calibration, self.layout.state)
        if target is None:
            raise InputError(f"{config}: calibration.file = 'none': the daemon would not load a calibration (leave it "
                             f"empty for {self.layout.state / CALIBRATION_FILE})")
        return target

    def run(self, minutes: float, false_starts_per_day: float | None = None) -> dict:
        from ...config import listen_minutes, target_per_day
        listen_minutes(minutes)  # checked here, before the service is stopped for a value calibrate would refuse
        if false_starts_per_day is not None:
            target_per_day(false_starts_per_day)
        release = current_release(self.layout)
        if release is None:
            raise InputError(f"no release is current under {self.layout.prefix}: deploy one first")
        exe, config = release.path / "venv" / "bin" / "edge-audio", release.path / "config.toml"
        if not exe.is_file():
            raise InputError(f"{exe}: not there (release {release.id} is incomplete: deploy again)")
        target = self.target(config)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.new")
        cmd = [str(exe), "calibrate", "--config", str(config), "--minutes", f"{minutes:g}", "--out", str(tmp),
               "--plots", str(target.parent)]
        if false_starts_per_day is not None:
            cmd += ["--false-starts-per-day", f"{false_starts_per_day:g}"]
        env = dict(os.environ, EDGE_AUDIO_HOME=str(self.layout.state))  # what the unit gives the daemon
        env.pop("STATE_DIRECTORY", None)

        why_not = self.service.why_not_running()
        was_running = not why_not and self.service.is_active()
        if why_not:
            self.say(f"service not stopped: {why_not}; a daemon started some other way must not hold the microphone")
        elif not was_running:
            self.say("the service is not running: nothing to stop")
        t0 = time.monotonic()
        error, thresholds, problem = None, {}, ""
        try:
            with _on_signals(_raise):
                if was_running:
                    self.say(f"stopping the {self.service.mode} service: calibration needs the microphone")
                    self.service.stop()
                self.say(f"calibrating release {release.id}: {minutes:g} min of its audio source (stopping this "
                         "step keeps the previous calibration)")
                self._listen(cmd, env, minutes, tmp)
                thresholds = self._commit(tmp, target)
        except EdgeAudioError as exc:
            error = exc
        finally:
            with _on_signals(signal.SIG_IGN):  # the service comes back even if asked to stop again now
                tmp.unlink(missing_ok=True)
                problem = self._start_again(was_running)
        if error is not None:
            kept = "the previous calibration is kept" if target.is_file() else "no calibration was written"
            message = f"calibration failed: {error}; {kept} ({target})"
            if problem:
                message += f"; and the service did not start again: {problem}"
            raise (Interrupted if isinstance(error, Interrupted) else InputError)(message)
        if problem:
            raise ServiceError(f"calibration written to {target}, but the service did not start again: {problem}")
        seconds = round(time.monotonic() - t0, 1)
        self.say(f"calibration of {len(thresholds)} label(s) in {seconds:g} s: {target}"
                 + ("; the service started again with it" if was_running else
                    "; the daemon loads it when it starts"))
        return {"result": "calibrated", "release": release.id, "file": str(target), "thresholds": thresholds,
                "seconds": seconds, "service": "restarted" if was_running else "not running"}

    def _listen(self, cmd: list[str], env: dict, minutes: float, tmp: Path) -> None:
        """Run `edge-audio calibrate`, relaying its lines; InputError with its own error line when it fails."""
        limit_s = minutes * 60 + max(GRACE_SECONDS, minutes * 60)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd="/",
                                start_new_session=True)  # a Ctrl-C at a terminal reaches this step, not the child
        timed_out = threading.Event()

        def stop_overdue():
            timed_out.set()
            _stop_group(proc)

        overdue = threading.Timer(limit_s, stop_overdue)
        overdue.daemon = True
        overdue.start()
        error_line = ""
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")
                if ": error: " in line:  # the child's one line becomes this step's own
                    error_line = line.split(": error: ", 1)[1]
                elif tmp.name not in line:  # its "wrote <temporary file>": this step says where it went
                    self._relay(line)
            code = proc.wait()
        except BaseException:
            _stop_group(proc)
            raise
        finally:
            overdue.cancel()
        if timed_out.is_set():
            raise InputError(f"it did not finish within {limit_s / 60:.0f} min and was stopped")
        if code != 0:
            raise InputError(error_line or f"edge-audio calibrate exited with status {code}")

    def _relay(self, line: str) -> None:
        try:
            self.relay(line)
        except BrokenPipeError:  # whoever started this step is gone (the SSH connection closed)
            _mute_stderr()
            raise Interrupted("the connection that started it is gone") from None

    @staticmethod
    def _commit(tmp: Path, target: Path) -> dict:
        """Read the new calibration back; replace the old one with it only if it calibrated a label."""
        from ...config import parse_calibration
        try:
            thresholds = parse_calibration(tmp.read_text(), str(target)).thresholds
        except (OSError, EdgeAudioError) as exc:
            raise InputError(f"what it wrote cannot be read back ({exc})") from None
        if not thresholds:
            raise InputError("no label could be calibrated from what was heard (each needs enough of its "
                             "background's tail: listen longer, see the lines above)")
        commit_file(tmp, target)
        return thresholds

    def _start_again(self, was_running: bool) -> str:
        """Start the service if it was running before; the problem in one line, or ""."""
        if not was_running:
            return ""
        try:
            self.say(f"starting the {self.service.mode} service again")
        except OSError:
            pass
        try:
            self.service.start()
        except ServiceError as exc:
            return str(exc)
        return ""


def _raise(signum, frame) -> None:
    raise Interrupted(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def _on_signals(handler):
    """`handler` for SIGTERM, SIGHUP and SIGINT inside the block (main thread only: Python's rule)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the calibration and anything it started (it dies without writing), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _mute_stderr() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stderr.fileno())
    os.close(devnull)
