"""`python -m tools deploy`: put the kit on devices over SSH, one after another, or on a fleet through Ansible.

First, here: the release's config is composed as the device will write it and read by the daemon's loader, the
bundle's sha256s and the watched label names are checked (validate.py); a bad value stops the deploy before
anything is built or sent. Per device: describe its Python (machine, version, C library), build what it needs here
(the project wheel; with --wheelhouse, every dependency wheel for its platform so it needs no internet), add the
default model bundle when the release needs it and the device has none, compare with the release it runs (the
same release again is a no-op, nothing uploaded), upload with tar over the one SSH connection, store the MQTT
password from stdin, then run `edge-audio release install` from the uploaded wheel: the device-side steps that
also serve the Ansible playbook (venv, selftest, atomic switch, unit, restart, health, roll back on failure).
With --calibrate M, `edge-audio release calibrate` follows on the device (without --profile/--config, it is all
that happens: the current release is calibrated again): the service is stopped, M minutes of the site's own audio
give per-label thresholds in PREFIX/state/calibration.toml, which outlives releases, and the service starts again.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edge.app.command import add_command, sayer
from edge.app.release.compose import split_setting
from edge.app.release.store import DEFAULT_BUNDLE, fingerprint, install_options
from edge.core.errors import InputError

from . import wheelhouse
from .remote import Remote, RemoteError, Target
from .upload import DefaultBundle, stage
from .validate import check_release

STATUS = ('if [ -f "$p/$1/manifest.json" ]; then echo bundle; else echo no-bundle; fi; '
          'if [ -x "$p/current/venv/bin/edge-audio" ]; then exec "$p/current/venv/bin/edge-audio" release status '
          '--prefix "$p"; else echo "{}"; fi')
INSTALL = 'd="$p/incoming/$1"; w="$d/wheels/$2"; py=$3; shift 3; ' \
          'PYTHONPATH="$w" exec "$py" -m edge.app.release install --prefix "$p" --stage "$d" --json "$@"'
SECRET = 'PYTHONPATH="$p/incoming/$1/wheels/$2" exec "$3" -m edge.app.release secret --prefix "$p" "$4"'
FORGET = 'rm -rf -- "$p/incoming/$1"'
CURRENT = ('e="$p/current/venv/bin/edge-audio"; if [ ! -x "$e" ]; then echo "edge-audio: error: no release is current under $p" '
           '>&2; exit 2; fi; exec "$e" release "$@" --prefix "$p"')


say = sayer("deploy")


@dataclass
class Plan:
    prefix: str
    profile: str | None
    config: Path | None
    bundle: Path | None
    settings: list[str]
    extras: str
    python: str
    service: str
    keep: int
    wheelhouse: Path | None
    password_file: Path | None
    system_site_packages: bool
    dry_run: bool
    calibrate: float | None = None  # minutes of the device's own audio, after the install (or on its own)
    false_starts_per_day: float | None = None

    @property
    def calibrate_only(self) -> bool:
        """--calibrate with no release to install: the current release is calibrated again."""
        return self.calibrate is not None and not (self.profile or self.config)


def settings_of(args) -> list[str]:
    """--set, --device-id and --broker as SECTION.KEY=VALUE settings; a key set twice is refused."""
    given = [(item, f"--set {item}") for item in args.set or []]
    if args.device_id:
        given.append((f"device.id={args.device_id}", "--device-id"))
    if args.broker:
        host, _, port = args.broker.rpartition(":") if args.broker.count(":") == 1 else (args.broker, "", "")
        given.append((f"mqtt.host={host}", "--broker"))
        if port:
            given.append((f"mqtt.port={port}", "--broker"))
    by: dict[str, str] = {}
    for item, flag in given:
        key = split_setting(item)[0]
        if key in by:
            raise InputError(f"{key} is set twice: by {by[key]} and {flag} (give it once)")
        by[key] = flag
    return [item for item, _ in given]


def plan_of(args) -> Plan:
    for name in ("config", "password_file"):
        value = getattr(args, name)
        if value and not Path(value).is_file():
            raise InputError(f"--{name.replace('_', '-')} {value}: file not found")
    if args.bundle and not (Path(args.bundle) / "manifest.json").is_file():
        raise InputError(f"--bundle {args.bundle}: not a model bundle (no manifest.json)")
    check_calibration_args(args)
    if not args.profile and not args.config and not (args.list or args.rollback or args.calibrate is not None):
        raise InputError("name a board profile with --profile NAME (or give --config FILE)")
    if args.keep < 1:
        raise InputError("--keep must be at least 1")
    wheelhouse.parse_extras(args.extras)
    return Plan(args.prefix, args.profile, Path(args.config) if args.config else None,
                Path(args.bundle) if args.bundle else None, settings_of(args), args.extras, args.python, args.service,
                args.keep, Path(args.wheelhouse) if args.wheelhouse else None,
                Path(args.password_file) if args.password_file else None, args.system_site_packages, args.dry_run,
                args.calibrate, args.false_starts_per_day)


def check_calibration_args(args) -> None:
    if args.calibrate is None:
        if args.false_starts_per_day is not None:
            raise InputError("--false-starts-per-day goes with --calibrate MINUTES")
        return
    if args.list or args.rollback:
        raise InputError("--calibrate: not with --list or --rollback")
    from edge.config import listen_minutes, target_per_day
    listen_minutes(args.calibrate, "--calibrate")
    if args.false_starts_per_day is not None:
        target_per_day(args.false_starts_per_day)


def deploy_one(remote: Remote, plan: Plan, wheel: Path, default: DefaultBundle | None = None) -> dict:
    """One device: probe, stage, upload, install. `default`: the default bundle, shipped when the device has no
    bundle of its own (None: the release names its model)."""
    info = remote.probe(plan.python)
    say(f"{remote.label}: {info['machine']}, Python {info['python']}, glibc {info['glibc'] or '?'}, uid {info['uid']}")
    platforms = []
    if plan.wheelhouse:
        platforms = [wheelhouse.Platform(info["machine"], info["python"], info["glibc"] or "2.17")]
        if info["machine"] not in wheelhouse.MACHINES:
            raise InputError(f"{remote.label}: no wheels for {info['machine']} (32-bit Raspberry Pi OS has no "
                             "LiteRT wheels: use the 64-bit OS)")
    service = plan.service if plan.service != "auto" else ("system" if info["uid"] == 0 else "user")
    status, has_bundle = device_status(remote, plan.prefix)
    bundle = plan.bundle
    if bundle is None and default is not None and not has_bundle:
        bundle, where = default.find(remote.label)
        say(f"{remote.label}: no model bundle on the device: shipping {bundle.name} "
            f"({wheelhouse.size_mib(bundle):.1f} MiB) from {where}")
    with tempfile.TemporaryDirectory(prefix="edge-audio-stage-") as tmp:
        folder = stage(plan, wheel, Path(tmp) / "stage", platforms, bundle)
        fp = fingerprint(folder, install_options(plan.profile, plan.settings, plan.extras, plan.system_site_packages,
                                                 service))
        if status.get("fingerprint") == fp:
            say(f"{remote.label}: {status['current']} is already current with the same wheel, bundle and config: "
                "nothing to do")
            return {"result": "unchanged", "release": status["current"]}
        upload = f"up-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        install_args = _install_args(plan, service)
        if plan.dry_run:
            say(f"{remote.label}: would upload {wheelhouse.size_mib(folder):.1f} MiB to "
                f"{plan.prefix}/incoming/{upload} and run:")
            print("  " + remote.argv(INSTALL, plan.prefix, upload, wheel.name, plan.python, *install_args)[-1])
            return {"result": "dry run", "release": status.get("current")}
        try:
            _upload(remote, plan, folder, upload, wheel, offline=bool(platforms))
            out = remote.run(INSTALL, plan.prefix, upload, wheel.name, plan.python, *install_args, stream=True)
        finally:  # used or not, an upload is never left behind (the install step removes the ones it ran)
            _forget_upload(remote, plan.prefix, upload)
    return json.loads(out.strip().splitlines()[-1])  # the caller adds the seconds (with a calibration's)


def device_status(remote: Remote, prefix: str) -> tuple[dict, bool]:
    """The device's current release (`release status`; {} when there is none) and whether it has a default
    bundle of its own, where a release without one looks (PREFIX/state/models/...)."""
    lines = remote.run(STATUS, prefix, f"state/{DEFAULT_BUNDLE}").strip().splitlines()
    return json.loads(lines[-1] if len(lines) > 1 else "{}"), lines[:1] == ["bundle"]


def _upload(remote: Remote, plan: Plan, folder: Path, upload: str, wheel: Path, offline: bool) -> None:
    say(f"{remote.label}: uploading {wheelhouse.size_mib(folder):.1f} MiB "
        f"({'offline wheelhouse' if offline else 'online install'})")
    t1 = time.monotonic()
    remote.upload(folder, plan.prefix, upload)
    say(f"{remote.label}: uploaded in {time.monotonic() - t1:.1f} s")
    if plan.password_file:
        with open(plan.password_file, "rb") as secret:
            remote.run(SECRET, plan.prefix, upload, wheel.name, plan.python, "mqtt_password", stdin=secret)


def calibrate_current(remote: Remote, plan: Plan, installed: str | None = None) -> dict:
    """`edge-audio release calibrate` of the device's current release, its progress streamed here."""
    args = ["calibrate", "--minutes", f"{plan.calibrate:g}", "--service", plan.service, "--json"]
    if plan.false_starts_per_day is not None:
        args += ["--false-starts-per-day", f"{plan.false_starts_per_day:g}"]
    if plan.dry_run:
        say(f"{remote.label}: would then run: {remote.argv(CURRENT, plan.prefix, *args)[-1]}")
        return {"result": "dry run"}
    say(f"{remote.label}: calibrating {installed or 'the current release'} on {plan.calibrate:g} min of the "
        "device's own audio, per source (a config with several [[sources]] has each calibrated in turn, into its "
        "own file; the service is stopped meanwhile: it holds the microphones)")
    try:
        out = remote.run(CURRENT, plan.prefix, *args, stream=True, timeout_s=plan.calibrate * 120 + 600)
    except RemoteError as exc:
        if "invalid choice: 'calibrate'" in str(exc):
            raise RemoteError(f"{remote.label}: the current release has no calibration step (older than this kit): "
                              "deploy this one with --calibrate") from None
        if installed:
            raise RemoteError(f"{exc}; release {installed} is installed and current") from None
        raise
    result = json.loads(out.strip().splitlines()[-1])
    say(f"{remote.label}: calibrated in {result['seconds']:g} s: "
        + "; ".join(f"{label} {value:.3f}" for label, value in result["thresholds"].items())
        + f" -> {result['file']}")
    return result


def _forget_upload(remote: Remote, prefix: str, upload: str) -> None:
    """Remove an upload if the device can still be reached: a partial one is of no use, and the install step
    removes the ones it ran (this catches the rest: a failed upload or secret, an interpreter that could not start
    the install step, an interrupted deploy)."""
    try:
        remote.run(FORGET, prefix, upload, timeout_s=60)
    except InputError:
        pass


def _install_args(plan: Plan, service: str) -> list[str]:
    args = ["--extras", plan.extras, "--keep", str(plan.keep), "--service", service]
    if plan.profile:
        args += ["--profile", plan.profile]
    if plan.system_site_packages:
        args.append("--system-site-packages")
    return args + [f"--set={s}" for s in plan.settings]


def _since(t0: float) -> float:
    return round(time.monotonic() - t0, 1)


def cmd_deploy(args) -> int:
    plan = plan_of(args)
    if args.inventory:
        from .fleet import rollout
        return rollout(args, plan)
    targets = [Target.parse(t) for t in args.targets]
    if not targets:
        raise InputError("name at least one device: USER@HOST[:PORT] (or --inventory FILE for a fleet)")
    installs = not (args.list or args.rollback or plan.calibrate_only)
    with tempfile.TemporaryDirectory(prefix="edge-audio-deploy-") as tmp:
        default = DefaultBundle(Path(tmp))
        wheel = None
        if installs:
            checked = check_release(plan, default.labels)  # before anything is built or sent
            say("the release's config is valid" + (
                f"; its labels are the model's ({checked.labels_from})" if checked.labels_from else
                "; its labels are checked on the device (no default bundle here to check them with)"
                if checked.default_model else ""))
            default = default if checked.default_model else None
            wheel = Path(args.wheel) if args.wheel else wheelhouse.build_project_wheel(Path("out/deploy"))
            if not wheel.is_file():
                raise InputError(f"--wheel {wheel}: file not found")
        results = []
        for target in targets:
            result = _on_device(target, args, plan, wheel, default)
            if result is not None:
                results.append((str(target), result))
    if len(results) > 1:
        for name, r in results:
            say(f"  {name:32s} {r['result']:10s} {r.get('release') or '':32s} {r['seconds']:6.1f} s")
    return 0


def _on_device(target: Target, args, plan: Plan, wheel: Path | None, default: DefaultBundle | None) -> dict | None:
    """What the command asks of one device: list, roll back, calibrate or install (+ calibrate)."""
    remote = Remote(target, args.ssh_config)
    try:
        if args.list:
            print(remote.run(CURRENT, plan.prefix, "list"), end="")
            return None
        if args.rollback:
            remote.run(CURRENT, plan.prefix, "rollback", "--service", plan.service, stream=True)
            return None
        t0 = time.monotonic()
        if plan.calibrate_only:
            calibration = calibrate_current(remote, plan)
            result = {"result": calibration["result"], "release": calibration.get("release")}
        else:
            result = deploy_one(remote, plan, wheel, default)
            if plan.calibrate is not None:
                installed = result.get("release") if result["result"] == "installed" else None
                result["calibration"] = calibrate_current(remote, plan, installed)
        result["seconds"] = _since(t0)
        say(f"{target}: {result['result']} {result.get('release') or ''} in {result['seconds']} s")
        return result
    finally:
        remote.close()


def add_parser(sub) -> None:
    p = add_command(sub, "deploy", "install a release on devices over SSH (or a fleet through Ansible)",
                    __doc__.split("\n\n", 1)[1], [
                        "python -m tools deploy pi@kitchen.local --profile pi4-usb-coral --device-id kitchen "
                        "--broker broker.lan",
                        "python -m tools deploy pi@10.0.0.7:2222 --profile pi5-usb-coral --wheelhouse out/wheelhouse"
                        "   (offline device)",
                        "python -m tools deploy pi@kitchen.local --prefix '~/edge-audio' --profile pi4-usb-coral   "
                        "(user service)",
                        "python -m tools deploy pi@kitchen.local --list          python -m tools deploy "
                        "pi@kitchen.local --rollback",
                        "python -m tools deploy pi@kitchen.local --profile pi4-usb-coral --calibrate 60   (deploy, "
                        "then calibrate)",
                        "python -m tools deploy pi@kitchen.local --calibrate 60 --false-starts-per-day 0.5   "
                        "(calibrate again only)",
                        "python -m tools deploy --inventory firmware_configs/ansible/inventory.example.yml --profile "
                        "pi4-usb-coral"])
    p.add_argument("targets", nargs="*", metavar="USER@HOST[:PORT]",
                   help="devices, deployed one after another; the first that fails stops the run")
    p.add_argument("--profile", metavar="NAME", help="board profile shipped in the wheel (edge-audio profiles)")
    p.add_argument("--config", metavar="FILE", help="your own TOML config instead of a profile")
    p.add_argument("--bundle", metavar="DIR", help="model bundle to ship in the release (default: the device's "
                                                   "own in PREFIX/state/models; a device with none gets the default "
                                                   "bundle from here: the installed copy or $EDGE_AUDIO_ASSETS)")
    p.add_argument("--prefix", default="/opt/edge-audio", metavar="DIR",
                   help="where releases live on the device (default: %(default)s; '~/edge-audio' for a user)")
    p.add_argument("--wheelhouse", metavar="DIR", help="build every dependency wheel here for the device's platform "
                                                       "and install offline (default: the device installs online)")
    p.add_argument("--device-id", metavar="ID", help="sets device.id in the release's config")
    p.add_argument("--broker", metavar="HOST[:PORT]", help="sets mqtt.host (and mqtt.port)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other config key, the value read as TOML (detector.allow='[\"Dog\", \"Cat\"]', 0.6, "
                        "true; a bare word is a string); repeatable, each key once. A [[sources]] table's key by its "
                        "id: sources.porch.url=rtsp://..., sources.porch.detector.allow='[\"Dog\"]' (the table must be "
                        "in the config: --set adds no source). A camera's password is better kept in --config FILE: "
                        "a --set value is on the device's install command line and in the release's record")
    p.add_argument("--password-file", metavar="FILE", help="MQTT password, stored on the device in PREFIX/etc "
                                                           "(sent over ssh's stdin, never on a command line)")
    p.add_argument("--extras", default=",".join(wheelhouse.DEFAULT_EXTRAS),
                   help="what the device installs besides NumPy (default: %(default)s; leave out alsa for WAV or "
                        "stdin sources: pyalsaaudio must be compiled for devices other than this host's platform)")
    p.add_argument("--system-site-packages", action="store_true",
                   help="the release's venv also sees the device's system packages")
    p.add_argument("--python", default="python3", metavar="PATH", help="the device's interpreter (default: python3)")
    p.add_argument("--service", default="auto", choices=("auto", "system", "user", "none"),
                   help="systemd unit mode on the device (default: auto = system as root, else user)")
    p.add_argument("--keep", type=int, default=3, metavar="N",
                   help="good releases kept on each device (default: %(default)s)")
    p.add_argument("--wheel", metavar="FILE", help="a built edge_audio wheel (default: build this checkout)")
    p.add_argument("--ssh-config", metavar="FILE", help="ssh client config (ssh -F; default: ~/.ssh/config)")
    p.add_argument("--calibrate", type=float, metavar="MINUTES",
                   help="then calibrate on the device: its service is stopped, MINUTES of its own audio (no watched "
                        "sounds, please) give per-label thresholds in PREFIX/state/calibration.toml (kept across "
                        "releases), the service starts again; without --profile/--config, only this happens")
    p.add_argument("--false-starts-per-day", type=float, metavar="N",
                   help="with --calibrate: the target per label (default: 1)")
    p.add_argument("--dry-run", action="store_true", help="check the device and build, show what would run")
    p.add_argument("--list", action="store_true", help="list the releases on each device")
    p.add_argument("--rollback", action="store_true", help="switch each device back to its previous good release")
    p.add_argument("--inventory", metavar="FILE", help="roll out to an Ansible inventory in waves (one canary, then "
                                                       "--wave of the rest) with firmware_configs/ansible/deploy.yml")
    p.add_argument("--wave", default="50%", help="Ansible batch size after the canary (default: %(default)s)")
    p.add_argument("--platform", action="append", metavar="MACHINE-cpXY",
                   help="with --inventory: wheelhouse platforms (default: x86_64-cp311 and aarch64-cp311)")
    p.set_defaults(func=cmd_deploy)
