"""`edge-audio release ...`: the device-side release steps. `python -m tools deploy` and the Ansible playbook both
call these; nothing else switches releases.

    install   a staged upload becomes PREFIX/releases/<id>: venv from the wheel (+ wheelhouse: offline), config,
              selftest, atomic switch of PREFIX/current, unit + udev rules, restart, health; any failure after the
              switch switches back. A rejected release is reduced to its release.json (with the reason) and
              install.log at once. The same upload again is a no-op.
    rollback  back to the newest good release before the current one (restart + health)
    list      the releases, the current one marked, a rejected one with why
    prune     keep the N newest good releases (a rejected release keeps only its release.json and install.log)
    calibrate stop the service, calibrate the current release on the site's own audio for M minutes, keep the
              result in PREFIX/state (it outlives releases), start the service again, whatever happened
    status    JSON: the current release and its fingerprint
    same      whether an upload, described by its files' digests, is the current release already
    secret    store a credential from stdin in PREFIX/etc (never on a command line)

It runs from the wheel itself before any venv exists (standard library only):
    PYTHONPATH=edge_audio-<version>-py3-none-any.whl python3 -m edge.app.release install --prefix ... --stage ...
"""

from __future__ import annotations

import sys

from ..command import OneLineParser, add_command, command_parser, run
from .service import MODES

PROG = "edge-audio release"


def _step(name: str):
    """The step `name` of edge.app.release.commands, imported when it runs."""
    def call(args) -> int:
        from . import commands
        return getattr(commands, name)(args)
    call.__name__ = name
    return call


def add_parser(sub) -> None:
    """The `release` command with its steps."""
    p = add_command(sub, "release", "install, switch, roll back and list releases on this device",
                    __doc__.split("\n\n", 1)[1].split("\n\nIt runs")[0],
                    ["edge-audio release list --prefix /opt/edge-audio"])
    rsub = p.add_subparsers(dest="release_command", metavar="STEP", parser_class=OneLineParser, required=True)

    def step(name, help_text, func, example):
        q = add_command(rsub, name, help_text, help_text, [example])
        q.add_argument("--prefix", default="/opt/edge-audio", metavar="DIR",
                       help="where releases live (default: %(default)s; ~/edge-audio for a user service)")
        q.add_argument("--json", action="store_true", help="machine-readable result on stdout")
        q.set_defaults(func=func)
        return q

    q = step("install", "make a staged upload a release, selftest it, switch to it, restart, check health",
             _step("cmd_install"), "edge-audio release install --stage /opt/edge-audio/incoming/up1 --profile pi4-usb-coral")
    q.add_argument("--stage", required=True, metavar="DIR",
                   help="the upload: wheels/ (the project wheel, plus dependency wheels for an offline install), "
                        "optional bundle/ and config.toml")
    _install_options(q)
    q.add_argument("--keep", type=int, default=3,
                   help="good releases kept after a success, ~165 MB each (default: %(default)s)")
    _service_args(q)

    q = step("same", "is an upload, described by its files' digests, what is current already? (then a fleet "
                     "uploads nothing to this device)", _step("cmd_same"),
             "edge-audio release same --digests up1.digests.json --stage /opt/edge-audio/incoming/up1 --json")
    q.add_argument("--digests", required=True, metavar="FILE",
                   help="JSON: each file of the upload (its path in it) -> its digest, as the host computed them")
    q.add_argument("--stage", required=True, metavar="DIR", help="the upload folder, holding its config.toml if any")
    _install_options(q)
    q.add_argument("--service", default="auto", choices=MODES, help="as install's (default: auto)")

    q = step("rollback", "switch back to the newest good release before the current one", _step("cmd_rollback"),
             "edge-audio release rollback --prefix ~/edge-audio")
    q.add_argument("--to", metavar="ID", help="a given release instead (see 'list')")
    _service_args(q)
    step("list", "the releases on this device (* = current; a rejected one with why)", _step("cmd_list"), "edge-audio release list --json")
    q = step("prune", "delete all but the N newest good releases (never the current one); rejected ones keep only "
                      "their record", _step("cmd_prune"),
             "edge-audio release prune --keep 3")
    q.add_argument("--keep", type=int, default=3, help="good releases to keep (default: %(default)s)")
    q = step("calibrate", "stop the service, calibrate the current release on this site's audio, keep the result "
                          "in PREFIX/state, start the service again", _step("cmd_calibrate"),
             "edge-audio release calibrate --prefix /opt/edge-audio --minutes 60")
    q.add_argument("--minutes", type=float, required=True, metavar="M",
                   help="listen to the release's audio source for M minutes (keep the watched sounds away)")
    q.add_argument("--false-starts-per-day", type=float, metavar="N",
                   help="target per label (default: edge-audio calibrate's, 1)")
    q.add_argument("--service", default="auto", choices=MODES,
                   help="the systemd unit to stop and start again: system, user or none; auto picks system as root "
                        "(default: auto)")
    step("status", "the current release and its fingerprint, as JSON", _step("cmd_status"), "edge-audio release status")
    q = step("secret", "store a credential read from stdin in PREFIX/etc (mode 0600)", _step("cmd_secret"),
             "edge-audio release secret mqtt_password < password.txt")
    q.add_argument("name", help="credential name, e.g. mqtt_password (the unit passes it with LoadCredential=)")


def _install_options(q) -> None:
    """The options that are part of a release's identity, with its files."""
    q.add_argument("--profile", metavar="NAME", help="board profile shipped in the wheel (used when the upload has "
                                                     "no config.toml)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. device.id=kitchen or mqtt.host=broker.lan, or a "
                        "[[sources]] table's by its id, e.g. sources.porch.url=rtsp://... (repeatable)")
    q.add_argument("--extras", default="litert,mqtt,alsa,clips", help="extras to install (default: %(default)s)")
    q.add_argument("--system-site-packages", action="store_true",
                   help="let the venv see the system's Python packages (e.g. Debian's python3-alsaaudio)")


def _service_args(q) -> None:
    q.add_argument("--service", default="auto", choices=MODES,
                   help="systemd unit: system (root), user (systemctl --user) or none; auto picks system as root "
                        "(default: auto)")
    q.add_argument("--health-timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the service and the broker (default: %(default)s)")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("edge-audio", "edge-audio release steps", {"release": __name__})
    return run(parser, ["release", *(sys.argv[1:] if argv is None else argv)], PROG)

