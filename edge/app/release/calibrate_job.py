"""`edge-audio release calibrate`: the site calibration as a release step, the one `python -m tools deploy
--calibrate M` and the Ansible playbook both run on a device.

    1. the current release, and the file its daemon loads a calibration from (`calibration.file`, else
       PREFIX/state/calibration.toml: outside the releases, so it survives deploys and rollbacks); with several
       [[sources]], each source's own file (calibration-<id>.toml there, or its [sources.calibration] file)
    2. stop the service if it runs: it holds the microphone
    3. `edge-audio calibrate` of the current release, M minutes of the audio source its config names (several
       sources: each in turn, `--source ID`, M minutes each); what it prints streams to stderr as it comes
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

    def targets(self, config: Path) -> list[tuple[str, Path]]:
        """(source id, the file its daemon loads a calibration from) for each source of this config: what
        `calibration.file` says, else calibration.toml (a named source's: calibration-<id>.toml) in the state
        directory."""
        from ...config import calibration_name, calibration_target, load_config
        out: list[tuple[str, Path]] = []
        for view in load_config(str(config)).views():
            where = f"sources.{view.source_id}." if view.source_id else ""
            target = calibration_target(view.calibration, self.layout.state, view.source_id)
            if target is None:
                raise InputError(f"{config}: {where}calibration.file = 'none': the daemon would not load a "
                                 f"calibration (leave it empty for {self.layout.state / calibration_name(view.source_id)})")
            other = next((sid for sid, t in out if t == target), None)
            if other is not None:
                raise InputError(f"{config}: sources {other} and {view.source_id} share the calibration file {target}: "
                                 "give each its own [sources.calibration] file, or leave it empty")
            out.append((view.source_id, target))
        return out

    def run(self, minutes: float, false_starts_per_day: float | None = None) -> dict:
        """Calibrate the current release: each of its sources in turn (M minutes each), the service stopped once
        for all of them. A source that fails stops the step there: its previous calibration is kept, and so are
        the new ones of the sources before it."""
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
        targets = self.targets(config)
        cmd = [str(exe), "calibrate", "--config", str(config), "--minutes", f"{minutes:g}"]
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
        done: list[tuple[str, Path, dict]] = []
        error, problem = None, ""
        try:
            with _on_signals(_raise):
                if was_running:
                    self.say(f"stopping the {self.service.mode} service: calibration needs the microphone")
                    self.service.stop()
                ids = ", ".join(sid for sid, _ in targets)
                self.say(f"calibrating release {release.id}: " + (f"{minutes:g} min of its audio source" if
                         len(targets) == 1 else f"its {len(targets)} sources in turn ({ids}), {minutes:g} min each")
                         + " (stopping this step keeps the previous calibration)")
                self._each(targets, cmd, env, minutes, done)
        except EdgeAudioError as exc:
            error = exc
        finally:
            with _on_signals(signal.SIG_IGN):  # the service comes back even if asked to stop again now
                for _, target in targets:
                    _tmp(target).unlink(missing_ok=True)
                problem = self._start_again(was_running)
        if error is not None:
            raise self._failed(error, targets[len(done)], done, problem)
        files = ", ".join(str(t) for _, t, _ in done)
        if problem:
            raise ServiceError(f"calibration written to {files}, but the service did not start again: {problem}")
        return self._result(release.id, done, round(time.monotonic() - t0, 1), was_running)

    def _each(self, targets: list, cmd: list[str], env: dict, minutes: float, done: list) -> None:
        """`edge-audio calibrate` for each source in turn, each result committed as it comes (into `done`)."""
        for source_id, target in targets:
            tmp = _tmp(target)
            if source_id and len(targets) > 1:
                self.say(f"sources.{source_id}: {minutes:g} min of its audio -> {target}")
            own = ["--source", source_id] if source_id else []
            self._listen([*cmd, *own, "--out", str(tmp), "--plots", str(target.parent)], env, minutes, tmp)
            done.append((source_id, target, self._commit(tmp, target)))

    @staticmethod
    def _failed(error: EdgeAudioError, failing: tuple, done: list, problem: str) -> EdgeAudioError:
        source_id, target = failing
        kept = "the previous calibration is kept" if target.is_file() else "no calibration was written"
        where = f"sources.{source_id}: " if source_id and f"sources.{source_id}" not in str(error) else ""
        message = f"calibration failed: {where}{error}; {kept} ({target})"
        if done:
            message += "; calibrated before it: " + ", ".join(f"{sid} ({t})" for sid, t, _ in done)
        if problem:
            message += f"; and the service did not start again: {problem}"
        return (Interrupted if isinstance(error, Interrupted) else InputError)(message)

    def _result(self, release: str, done: list, seconds: float, was_running: bool) -> dict:
        many = len(done) > 1
        thresholds = {(f"{sid}: " if many else "") + label: value for sid, _, t in done for label, value in t.items()}
        files = ", ".join(str(t) for _, t, _ in done)
        self.say(f"calibration of {len(thresholds)} label(s)" + (f" over {len(done)} sources" if many else "")
                 + f" in {seconds:g} s: {files}" + ("; the service started again with it" if was_running else
                                                    "; the daemon loads it when it starts"))
        out = {"result": "calibrated", "release": release, "file": files, "thresholds": thresholds,
               "seconds": seconds, "service": "restarted" if was_running else "not running"}
        if done[0][0]:
            out["sources"] = {sid: {"file": str(t), "thresholds": th} for sid, t, th in done}
        return out

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


def _tmp(target: Path) -> Path:
    """Where `edge-audio calibrate` writes before the result is read back and committed."""
    return target.with_name(f".{target.name}.{os.getpid()}.new")


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
