"""The `edge-audio release` steps themselves (the parser is edge.app.release, which imports this module only
when a step runs: building the command line stays light for the daemon). Standard library only, like the parser:
it runs from the wheel before any venv exists."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from ...core.errors import InputError
from ...core.files import replace_file
from ..command import say
from .steps import Rejected, ReleaseJob
from .store import (INSTALLING, OK, REJECTED, Layout, Release, current_release, file_digest, fingerprint_of,
                    install_options, install_running, list_releases, previous_good, prune)
from .service import Service

SECRET_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def cmd_install(args) -> int:
    layout = Layout.at(args.prefix)
    stage = Path(args.stage).expanduser()
    try:
        job = ReleaseJob(layout, Service.choose(args.service, layout), say)
        result = job.install(stage, profile=args.profile, settings=args.set, extras=args.extras,
                             system_site_packages=args.system_site_packages, keep=args.keep,
                             health_timeout_s=args.health_timeout)
    finally:
        if stage.parent == layout.incoming:  # an upload is used once, whatever happened
            shutil.rmtree(stage, ignore_errors=True)
    return _done(args, result)


def _done(args, result: dict) -> int:
    """A step's result as JSON on stdout when asked for (the host reads it), exit status 0."""
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_rollback(args) -> int:
    layout = Layout.at(args.prefix)
    current = current_release(layout)
    if args.to:
        target = next((r for r in list_releases(layout) if r.id == args.to), None)
        if target is None or target.status != OK:
            raise InputError(f"{args.to}: no good release of that id under {layout.releases} (see 'list')")
    else:
        target = previous_good(layout, current)
        if target is None:
            raise InputError(f"no good release older than {current.id if current else 'nothing'} to roll back to")
    job = ReleaseJob(layout, Service.choose(args.service, layout), say)
    try:
        job.go_live(target, current, args.health_timeout)
    except Rejected as exc:
        raise InputError(f"rollback to {target.id} failed health ({exc}); switched back to "
                         f"{current.id if current else 'nothing'}") from None
    say(f"rolled back: {target.id} is current (was {current.id if current else 'nothing'})")
    return _done(args, {"result": "rolled back", "release": target.id, "previous": current.id if current else None})


def cmd_list(args) -> int:
    layout = Layout.at(args.prefix)
    current = current_release(layout)
    releases = list_releases(layout)
    if args.json:
        print(json.dumps([{"id": r.id, "current": bool(current and r.id == current.id), **r.info}
                          for r in releases], indent=2))
        return 0
    if not releases:
        print(f"no releases under {layout.releases}")
        return 0
    running = install_running(layout)
    for r in releases:
        print(list_line(r, bool(current and r.id == current.id), running))
    return 0


REASON_CHARS = 160  # of a rejection's reason on its `list` line (release.json and install.log hold all of it)


def list_line(r: Release, is_current: bool, running: bool = True) -> str:
    """One release on one line: * when current, its id and status, then its profile, or why it was rejected;
    one still "installing" while no install runs was abandoned (the next install or prune rejects it)."""
    if r.status == OK:
        extra = f"profile {r.info.get('profile') or '(config file)'}"
    elif r.status == REJECTED:
        reason = " ".join(str(r.info.get("reason") or "no reason recorded").split())
        extra = reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 3].rstrip() + "..."
    else:
        extra = "no readable release.json"
        if r.status == INSTALLING:
            extra = "install under way" if running else \
                "install interrupted (the next install or prune rejects it and frees its files)"
    return f"{'*' if is_current else ' '} {r.id:32s} {r.status:9s} {extra}"


def cmd_prune(args) -> int:
    removed = prune(Layout.at(args.prefix), args.keep)
    print("\n".join(f"removed {rid}" for rid in removed) or "nothing to prune")
    return 0


def cmd_calibrate(args) -> int:
    from .calibrate_job import CalibrationJob
    layout = Layout.at(args.prefix)
    result = CalibrationJob(layout, Service.choose(args.service, layout), say).run(args.minutes,
                                                                                  args.false_starts_per_day)
    return _done(args, result)


def cmd_status(args) -> int:
    layout = Layout.at(args.prefix)
    current = current_release(layout)
    print(json.dumps({"prefix": str(layout.prefix), "current": current.id if current else None,
                      "fingerprint": current.fingerprint if current else None,
                      "releases": len(list_releases(layout)),
                      "python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}))
    return 0


def cmd_same(args) -> int:
    """{"result": "unchanged", "release": ID} when the upload the digests describe, with these options, is the
    current release already; else {"result": "different", "release": the current one or null}."""
    layout = Layout.at(args.prefix)
    try:
        digests = json.loads(Path(args.digests).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"--digests {args.digests}: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise InputError(f"--digests {args.digests}: expected an object of file -> digest")
    config = Path(args.stage) / "config.toml"
    if config.is_file():
        digests["config.toml"] = file_digest(config)
    options = install_options(args.profile, args.set, args.extras, args.system_site_packages,
                              Service.choose(args.service, layout).mode)
    current = current_release(layout)
    same = current is not None and current.status == OK and current.fingerprint == fingerprint_of(digests, options)
    if args.json:
        print(json.dumps({"result": "unchanged" if same else "different", "release": current.id if current else None}))
    elif same:
        print(f"{current.id} is current with the same files, config and options: nothing to upload")
    else:
        print(f"not the current release ({current.id if current else 'none'}): the upload is needed")
    return 0


def cmd_secret(args) -> int:
    if not SECRET_NAME.fullmatch(args.name):
        raise InputError(f"secret name {args.name!r}: lower-case letters, digits and _ only")
    layout = Layout.at(args.prefix)
    layout.create()
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise InputError("no secret on stdin")
    replace_file(layout.secrets / args.name, data, mode=0o600)
    say(f"{args.name} stored in {layout.secrets} (mode 0600)")
    return 0
