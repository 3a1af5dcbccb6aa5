"""The steps of one release, in order: stage -> release folder -> config -> venv -> selftest -> switch -> service ->
health, and the way back when health fails. Standard library only (see release.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ... import firmware
from ...core.errors import InputError
from ...core.files import replace_file
from .compose import compose_config, split_setting, values_match
from .store import (DEFAULT_BUNDLE, INSTALL_LOG, INSTALLING, OK, REJECTED, RELEASE_FILE, InstallLock, Layout,
                    Release, current_release, drop_old_records, fingerprint, install_options, new_release_id,
                    project_wheel, prune, reclaim_abandoned, strip, switch, wheel_version)
from .service import Service, ServiceError

class Rejected(InputError):
    """A release that did not pass: the message is the one line the operator reads."""


class ReleaseJob:
    def __init__(self, layout: Layout, service: Service, say):
        self.layout = layout
        self.service = service
        self.say = say
        self._log_file: Path | None = None  # the install log of the release being installed

    # -- install ----------------------------------------------------------------------------------------------------
    def install(self, stage: Path, profile: str | None, settings: list[str], extras: str, system_site_packages: bool,
                keep: int, health_timeout_s: float) -> dict:
        layout = self.layout
        if not (stage / "wheels").is_dir():
            raise InputError(f"{stage}: not an upload (no wheels/ folder)")
        wheel = project_wheel(stage / "wheels")
        if not (stage / "config.toml").is_file():
            if not profile:
                raise InputError("the upload has no config.toml: name a board profile with --profile")
            firmware.profile_text(profile)  # an unknown name fails here, before anything is created
        layout.create()
        with InstallLock(layout) as lock:  # for the whole install: a second one is refused meanwhile
            for rid, freed in reclaim_abandoned(layout).items():
                self.say(f"release {rid} was left installing by an install that ended before it finished: "
                         f"rejected, reduced to its record ({freed / 2**20:.0f} MiB freed)")
            return self._install(lock, stage, wheel, profile, settings, extras, system_site_packages, keep,
                                 health_timeout_s)

    def _install(self, lock: InstallLock, stage: Path, wheel: Path, profile: str | None, settings: list[str],
                 extras: str, system_site_packages: bool, keep: int, health_timeout_s: float) -> dict:
        layout = self.layout
        options = install_options(profile, settings, extras, system_site_packages, self.service.mode)
        fp = fingerprint(stage, options)
        current = current_release(layout)
        if current is not None and current.fingerprint == fp and current.status == OK:
            self.say(f"{current.id} is already current with the same wheel, bundle and config: nothing to do")
            return {"result": "unchanged", "release": current.id}
        rid = new_release_id(layout, wheel_version(wheel))
        path = layout.releases / rid
        lock.note(rid)
        path.mkdir()
        release = Release(rid, path, {"status": INSTALLING, "fingerprint": fp, "version": wheel_version(wheel),
                                      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                      "profile": profile or "", "previous": current.id if current else None,
                                      "options": options})
        release.save()  # before the copy: from now on prune sees an install, not a folder without release.json
        shutil.copytree(stage, path, copy_function=_link_or_copy, dirs_exist_ok=True)  # the upload goes once
        #                                                 the job is done: this code may be running from its wheel
        release.save()  # (in case the upload held a release.json)
        with self._logging(path / INSTALL_LOG):
            return self._build_and_switch(release, current, wheel.name, profile, settings, extras,
                                          system_site_packages, keep, health_timeout_s)

    def _build_and_switch(self, release: Release, current: Release | None, wheel: str, profile: str | None,
                          settings: list[str], extras: str, system_site_packages: bool, keep: int,
                          health_timeout_s: float) -> dict:
        rid, was = release.id, current.id if current else "no release"
        self.say(f"release {rid} (was: {current.id if current else 'none'})")
        t0 = time.monotonic()
        try:
            self._write_config(release, profile, settings)
            self._make_venv(release, wheel, extras, system_site_packages)
            self.service.render(release.path)
            self.say("selftest of the new release")
            self.selftest(release, settings=settings)
        except (InputError, OSError, subprocess.SubprocessError) as exc:
            reason = self._reject(release, " ".join(str(exc).split()))
            raise Rejected(f"release {rid} rejected: {reason}; {was} stays current") from None
        self._trim_wheels(release.path, wheel)
        try:
            self.go_live(release, current, health_timeout_s)
        except Rejected as exc:
            self._reject(release, f"health: {exc}")
            raise Rejected(f"release {rid} failed health ({exc}); switched back to {was}") from None
        release.save(status=OK, install_seconds=round(time.monotonic() - t0, 1))
        removed = prune(self.layout, keep)
        self.say(f"{rid} is current" + (f"; pruned {len(removed)} old release(s)" if removed else ""))
        return {"result": "installed", "release": rid, "previous": current.id if current else None,
                "seconds": round(time.monotonic() - t0, 1)}

    def _reject(self, release: Release, reason: str) -> str:
        """A release that did not pass keeps its record only (release.json with the reason, install.log)."""
        release.save(status=REJECTED, reason=reason)
        self._log(f"rejected: {reason}")  # (the operator reads it in the error line)
        freed = strip(release)
        self.say(f"removed the rejected release's files ({freed / 2**20:.0f} MiB); its {RELEASE_FILE} and "
                 f"{INSTALL_LOG} stay ('list' shows why)")
        drop_old_records(self.layout)
        return reason

    @contextlib.contextmanager
    def _logging(self, log: Path):
        """Every line said meanwhile also goes to the release's install log."""
        say = self.say

        def both(line: str) -> None:
            say(line)
            self._log(line)
        self.say, self._log_file = both, log
        try:
            yield
        finally:
            self.say, self._log_file = say, None

    def _log(self, line: str) -> None:
        if self._log_file is not None:
            with open(self._log_file, "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def _write_config(self, release: Release, profile: str | None, settings: list[str]) -> None:
        own = release.path / "config.toml"
        text = own.read_text() if own.is_file() else firmware.profile_text(profile)
        bundle = release.path / "bundle"
        text = compose_config(text, str(bundle) if (bundle / "manifest.json").is_file() else None, settings)
        replace_file(own, text)  # a new file: `own` may be a hard link into the upload

    def _make_venv(self, release: Release, wheel: str, extras: str, system_site_packages: bool) -> None:
        venv, wheels = release.path / "venv", release.path / "wheels"
        offline = any(p.name != wheel for p in wheels.iterdir())
        self.say(f"venv with {Path(sys.executable).name} {'%d.%d.%d' % sys.version_info[:3]}"
                 + (" (+ system site packages)" if system_site_packages else ""))
        _run([sys.executable, "-m", "venv", *(["--system-site-packages"] if system_site_packages else []), str(venv)],
             "creating the venv", "on Debian/Raspberry Pi OS: apt-get install python3-venv")
        where = f"offline from the {len(list(wheels.iterdir()))} uploaded wheels" if offline else \
            "from the package index (online)"
        self.say(f"installing edge-audio[{extras}] {where}")
        t0 = time.monotonic()
        spec = f"{wheels / wheel}[{extras}]" if extras else str(wheels / wheel)
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir",
              "--disable-pip-version-check", *(["--no-index"] if offline else []), "--find-links", str(wheels), spec],
             "installing the release", _pip_hint(extras))
        self.say(f"installed in {time.monotonic() - t0:.0f} s")

    @staticmethod
    def _trim_wheels(path: Path, wheel: str) -> None:
        """The venv is built: keep the project wheel, drop the dependency wheels (tens of MB per release)."""
        for p in (path / "wheels").iterdir():
            if p.name != wheel:
                p.unlink()

    # -- checks -----------------------------------------------------------------------------------------------------
    def selftest(self, release: Release, settings: list[str] = (), extra: list[str] = (), via: Path | None = None
                 ) -> dict:
        """`edge-audio selftest` of a release (through `via`, e.g. PREFIX/current, when given), with the
        credentials the service would get. Raises Rejected with the first failure."""
        root = via or release.path
        env = dict(os.environ, EDGE_AUDIO_HOME=str(self.layout.state))
        if (self.layout.secrets / "mqtt_password").is_file():
            env["CREDENTIALS_DIRECTORY"] = str(self.layout.secrets)  # what LoadCredential= gives the service
        cmd = [str(root / "venv" / "bin" / "edge-audio"), "selftest", "--config", str(root / "config.toml"), "--json",
               *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            detail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise Rejected(f"selftest did not run: {detail}") from None
        for check in report["checks"]:
            self.say(f"  {check['status']:7s} {check['name']:7s} {check['detail']}")
        failed = next((c for c in report["checks"] if c["status"] == "failed"), None)
        if failed is not None:
            missing = self._missing_bundle(release, report) if failed["name"] in ("bundle", "model") else ""
            raise Rejected(f"selftest: {failed['name']}: {missing or failed['detail']}")
        values = report.get("values", {})
        for item in settings:
            key, value = split_setting(item)
            if key in values and not values_match(values[key], value):
                raise Rejected(f"config.toml: --set {key} did not take effect (the file sets it in a form "
                               "this step does not edit; put it under its [section] table)")
        return report

    def _missing_bundle(self, release: Release, report: dict) -> str:
        """The failure explained when the release ships no bundle, its config names none and the device has none
        where the daemon then looks ("" otherwise)."""
        default = self.layout.state / DEFAULT_BUNDLE
        if "model.path" not in report.get("values", {}) or report["values"]["model.path"] or \
                (release.path / "bundle" / "manifest.json").is_file() or (default / "manifest.json").is_file():
            return ""
        return (f"no model bundle: the release ships none and there is none at {default} (ship one with the "
                f"release, or install it there: EDGE_AUDIO_HOME={self.layout.state} edge-audio fetch)")

    def go_live(self, release: Release, previous: Release | None, health_timeout_s: float) -> None:
        """Switch `current` to `release`, restart the service, check health; on failure switch back."""
        switch(self.layout, release)
        self.say(f"current -> releases/{release.id}")
        why_not = self.service.why_not_running()
        restarted = False
        try:
            if why_not:
                self.say(f"service not restarted: {why_not}; health = selftest + broker")
                self.selftest(release, via=self.layout.current, extra=["--require-broker"])
            else:
                self.service.install(self.layout.current.resolve(), self.say)
                self.say(f"restarting the {self.service.mode} service (waits for READY=1)")
                restarted = True
                self.service.restart()
                self.selftest(release, via=self.layout.current,
                              extra=["--require-broker", "--wait-online", str(health_timeout_s)])
        except (Rejected, ServiceError) as exc:
            switch(self.layout, previous)
            self.say(f"current -> {('releases/' + previous.id) if previous else '(none)'} (switched back)")
            if restarted and previous is not None:
                try:
                    self.service.install(previous.path, self.say)
                    self.service.restart()
                except ServiceError as again:
                    self.say(f"the previous release did not restart either: {again}")
            raise Rejected(str(exc)) from None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _pip_hint(extras: str) -> str:
    if "alsa" in extras:
        return ("pyalsaaudio is compiled on the device when no wheel for it was uploaded: apt-get install gcc "
                "python3-dev libasound2-dev, or leave the alsa extra out for WAV/stdin sources")
    return "check the device's Python version and architecture against the uploaded wheels"


def _run(cmd: list[str], what: str, hint: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [l.strip() for l in (proc.stderr + proc.stdout).splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith("ERROR") or "error" in l.lower()]
        detail = (errors or lines or [f"exit status {proc.returncode}"])[0]
        raise InputError(f"{what} failed: {detail[:300]} ({hint})")
