"""`edge-audio release ...`: the device-side release steps. `python -m tools deploy` and the Ansible playbook both
call these; nothing else switches releases.

    install   a staged upload becomes PREFIX/releases/<id>: venv from the wheel (+ wheelhouse: offline), config,
              selftest, atomic switch of PREFIX/current, unit + udev rules, restart, health; any failure after the
              switch switches back. The same upload again is a no-op.
    rollback  back to the newest good release before the current one (restart + health)
    list      the releases, the current one marked
    prune     keep the N newest good releases
    calibrate stop the service, calibrate the current release on the site's own audio for M minutes, keep the
              result in PREFIX/state (it outlives releases), start the service again, whatever happened
    status    JSON: the current release and its fingerprint
    secret    store a credential from stdin in PREFIX/etc (never on a command line)

It runs from the wheel itself before any venv exists (standard library only):
    PYTHONPATH=edge_audio-<version>-py3-none-any.whl python3 -m edge.app.release install --prefix ... --stage ...
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from ..core.errors import InputError
from .command import OneLineParser, run
from .release_steps import Rejected, ReleaseJob
from .release_store import OK, Layout, current_release, list_releases, previous_good, prune
from .service import MODES, Service

PROG = "edge-audio release"
SECRET_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def say(message: str) -> None:
    print(f"edge-audio: {message}", file=sys.stderr, flush=True)


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
    if args.json:
        print(json.dumps({"result": "rolled back", "release": target.id, "previous": current.id if current else None}))
    return 0


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
    for r in releases:
        mark = "*" if current and r.id == current.id else " "
        extra = r.info.get("reason", "") if r.status != OK else f"profile {r.info.get('profile') or '(config file)'}"
        print(f"{mark} {r.id:32s} {r.status:9s} {extra}")
    return 0


def cmd_prune(args) -> int:
    removed = prune(Layout.at(args.prefix), args.keep)
    print("\n".join(f"removed {rid}" for rid in removed) or "nothing to prune")
    return 0


def cmd_calibrate(args) -> int:
    from .release_calibrate import CalibrationJob
    layout = Layout.at(args.prefix)
    result = CalibrationJob(layout, Service.choose(args.service, layout), say).run(args.minutes,
                                                                                  args.false_starts_per_day)
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_status(args) -> int:
    layout = Layout.at(args.prefix)
    current = current_release(layout)
    print(json.dumps({"prefix": str(layout.prefix), "current": current.id if current else None,
                      "fingerprint": current.fingerprint if current else None,
                      "releases": len(list_releases(layout)),
                      "python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}))
    return 0


def cmd_secret(args) -> int:
    if not SECRET_NAME.fullmatch(args.name):
        raise InputError(f"secret name {args.name!r}: lower-case letters, digits and _ only")
    layout = Layout.at(args.prefix)
    layout.create()
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise InputError("no secret on stdin")
    tmp = layout.secrets / f".{args.name}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, layout.secrets / args.name)
    say(f"{args.name} stored in {layout.secrets} (mode 0600)")
    return 0


def add_subcommands(sub) -> None:
    """The `release` command with its subcommands, on an argparse subparsers object."""
    import argparse
    p = sub.add_parser("release", help="install, switch, roll back and list releases on this device",
                       description=__doc__.split("\n\n", 1)[1].split("\n\nIt runs")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example: edge-audio release list --prefix /opt/edge-audio")
    rsub = p.add_subparsers(dest="release_command", metavar="STEP", parser_class=OneLineParser, required=True)

    def step(name, help_text, func, example):
        q = rsub.add_parser(name, help=help_text, description=help_text, epilog=f"example: {example}")
        q.add_argument("--prefix", default="/opt/edge-audio", metavar="DIR",
                       help="where releases live (default: %(default)s; ~/edge-audio for a user service)")
        q.add_argument("--json", action="store_true", help="machine-readable result on stdout")
        q.set_defaults(func=func)
        return q

    q = step("install", "make a staged upload a release, selftest it, switch to it, restart, check health",
             cmd_install, "edge-audio release install --stage /opt/edge-audio/incoming/up1 --profile pi4-usb-coral")
    q.add_argument("--stage", required=True, metavar="DIR",
                   help="the upload: wheels/ (the project wheel, plus dependency wheels for an offline install), "
                        "optional bundle/ and config.toml")
    q.add_argument("--profile", metavar="NAME", help="board profile shipped in the wheel (used when the upload has "
                                                     "no config.toml)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. device.id=kitchen or mqtt.host=broker.lan (repeatable)")
    q.add_argument("--extras", default="litert,mqtt,alsa", help="extras to install (default: %(default)s)")
    q.add_argument("--system-site-packages", action="store_true",
                   help="let the venv see the system's Python packages (e.g. Debian's python3-alsaaudio)")
    q.add_argument("--keep", type=int, default=3,
                   help="good releases kept after a success, ~165 MB each (default: %(default)s)")
    _service_args(q)

    q = step("rollback", "switch back to the newest good release before the current one", cmd_rollback,
             "edge-audio release rollback --prefix ~/edge-audio")
    q.add_argument("--to", metavar="ID", help="a given release instead (see 'list')")
    _service_args(q)
    step("list", "the releases on this device (* = current)", cmd_list, "edge-audio release list --json")
    q = step("prune", "delete all but the N newest good releases (never the current one)", cmd_prune,
             "edge-audio release prune --keep 3")
    q.add_argument("--keep", type=int, default=3, help="good releases to keep (default: %(default)s)")
    q = step("calibrate", "stop the service, calibrate the current release on this site's audio, keep the result "
                          "in PREFIX/state, start the service again", cmd_calibrate,
             "edge-audio release calibrate --prefix /opt/edge-audio --minutes 60")
    q.add_argument("--minutes", type=float, required=True, metavar="M",
                   help="listen to the release's audio source for M minutes (keep the watched sounds away)")
    q.add_argument("--false-starts-per-day", type=float, metavar="N",
                   help="target per label (default: edge-audio calibrate's, 1)")
    q.add_argument("--service", default="auto", choices=MODES,
                   help="the systemd unit to stop and start again: system, user or none; auto picks system as root "
                        "(default: auto)")
    step("status", "the current release and its fingerprint, as JSON", cmd_status, "edge-audio release status")
    q = step("secret", "store a credential read from stdin in PREFIX/etc (mode 0600)", cmd_secret,
             "edge-audio release secret mqtt_password < password.txt")
    q.add_argument("name", help="credential name, e.g. mqtt_password (the unit passes it with LoadCredential=)")


def _service_args(q) -> None:
    q.add_argument("--service", default="auto", choices=MODES,
                   help="systemd unit: system (root), user (systemctl --user) or none; auto picks system as root "
                        "(default: auto)")
    q.add_argument("--health-timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the service and the broker (default: %(default)s)")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="edge-audio", description="edge-audio release steps")
    add_subcommands(parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser))
    return run(parser, ["release", *(sys.argv[1:] if argv is None else argv)], PROG)


if __name__ == "__main__":
    sys.exit(main())
