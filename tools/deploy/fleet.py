"""`python -m tools deploy --inventory FILE`: roll a release out to a fleet with Ansible
(firmware_configs/ansible/deploy.yml: one canary, then waves; any failure stops it).

In order: every host's variables are read through Ansible and its config checked here (tools/deploy/inventory.py),
so a bad value stops the rollout before anything is built or uploaded; then one upload is built for the whole fleet
(the project wheel, wheelhouses for every platform asked for, the model bundle: --bundle, else this machine's
default bundle, since a fresh device has none) and ansible-playbook rolls it out. The screen gets one short line per
host and step, and for a failed host one line with its step, the reason and what became of its release; Ansible's
own output goes to out/deploy/fleet-<time>.log, named on the screen."""

from __future__ import annotations

import json
import secrets
import shutil
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from edge.app.command import sayer
from edge.app.release.store import file_digests
from edge.core.errors import InputError

from . import ansible_run, wheelhouse
from .fleet_report import Progress
from .inventory import Given, Host, check_config, few, overrides, plan_host, read_hosts
from .upload import DefaultBundle, stage

DEFAULT_PLATFORMS = ("x86_64-cp311", "aarch64-cp311")
KIT_PREFIX, KIT_PYTHON, KIT_KEEP = "/opt/edge-audio", "python3", 3

say = sayer("deploy")


def rollout(args, plan) -> int:
    inventory = _check_args(args, plan)
    log = ansible_run.Log()
    try:
        return _rollout(args, plan, inventory, log)
    finally:
        log.close()


def _check_args(args, plan) -> Path:
    inventory = Path(args.inventory)
    if not inventory.is_file():
        raise InputError(f"--inventory {inventory}: file not found")
    if args.targets or args.list or args.rollback or plan.settings:
        raise InputError("with --inventory, devices, --device-id, --broker and --set come from the inventory "
                         "(edge_audio_device_id, edge_audio_broker, edge_audio_set); --list/--rollback are per host")
    if plan.calibrate_only:
        raise InputError("with --inventory, --calibrate follows a rollout: name the board profile (--profile) or "
                         "--config too")
    if plan.password_file and not Path(plan.password_file).read_bytes().strip():
        raise InputError(f"--password-file {plan.password_file}: the file is empty")
    return inventory.resolve()


def defaults_of(plan) -> dict[str, Given]:
    """The command line's values the playbook gets as edge_audio_default_* (a host's own variable wins)."""
    extras = ",".join(wheelhouse.DEFAULT_EXTRAS)
    password = str(Path(plan.password_file).resolve()) if plan.password_file else None
    return {
        "edge_audio_profile": Given("--profile", plan.profile or "", bool(plan.profile)),
        "edge_audio_prefix": Given("--prefix", plan.prefix, plan.prefix != KIT_PREFIX),
        "edge_audio_python": Given("--python", plan.python, plan.python != KIT_PYTHON),
        "edge_audio_extras": Given("--extras", plan.extras, plan.extras != extras),
        "edge_audio_keep": Given("--keep", plan.keep, plan.keep != KIT_KEEP),
        "edge_audio_service": Given("--service", plan.service, plan.service != "auto"),
        "edge_audio_system_site_packages": Given("--system-site-packages", plan.system_site_packages,
                                                 plan.system_site_packages),
        "edge_audio_calibrate_minutes": Given("--calibrate", plan.calibrate, plan.calibrate is not None),
        "edge_audio_false_starts_per_day": Given("--false-starts-per-day", plan.false_starts_per_day,
                                                 plan.false_starts_per_day is not None),
        "edge_audio_password_file": Given("--password-file", password, password is not None),
    }


def _rollout(args, plan, inventory: Path, log: ansible_run.Log) -> int:
    playbook = ansible_run.find("ansible-playbook")
    defaults = defaults_of(plan)
    hosts = [plan_host(h, defaults, plan.config) for h in read_hosts(inventory, log)]
    with tempfile.TemporaryDirectory(prefix="edge-audio-fleet-") as tmp:
        tmp = Path(tmp)
        bundle = _bundle(plan, tmp)
        for host in hosts:
            check_config(host, plan, bundle)
        say(f"{len(hosts)} host(s), each one's config valid: {few([f'{h.name} ({h.source})' for h in hosts])}")
        for line in overrides(hosts, defaults, plan.config):
            say(line)
        wheel = Path(args.wheel) if args.wheel else wheelhouse.build_project_wheel(Path("out/deploy"))
        if not wheel.is_file():
            raise InputError(f"--wheel {wheel}: file not found")
        variables = _upload(args, plan, hosts, wheel, bundle, tmp) | _host_configs(hosts, tmp)
        variables |= {f"edge_audio_default_{var[len('edge_audio_'):]}": given.value for var, given in defaults.items()
                      if given.value is not None and (given.typed or var != "edge_audio_python")}
        (tmp / "vars.json").write_text(json.dumps(variables))
        cmd = [playbook, "-i", str(inventory), str(ansible_run.PLAYBOOK), "-e", f"@{tmp / 'vars.json'}"]
        if args.ssh_config:
            cmd += ["--ssh-common-args", f"-F {Path(args.ssh_config).resolve()}"]
        if plan.dry_run:
            cmd.append("--check")
        return _play(cmd, [h.name for h in hosts], log, plan.dry_run)


def _bundle(plan, scratch: Path) -> Path:
    """--bundle, else the default bundle (a fresh device has none, and its daemon could not start)."""
    if plan.bundle:
        return Path(plan.bundle)
    try:
        path, where = DefaultBundle(scratch / "bundle").find("the fleet")
    except InputError:
        raise InputError("no --bundle, and no default bundle here to ship: install it with 'python -m tools fetch' "
                         "(or set EDGE_AUDIO_ASSETS to the asset mirror), or give --bundle DIR") from None
    say(f"no --bundle: shipping the default bundle {path.name} ({wheelhouse.size_mib(path):.1f} MiB) from {where}")
    return path


def _upload(args, plan, hosts: list[Host], wheel: Path, bundle: Path, tmp: Path) -> dict:
    """One tar for every host: the project wheel, the wheelhouses (every extra some host installs), the bundle."""
    extras = list(dict.fromkeys(e for h in hosts for e in wheelhouse.parse_extras(h.extras)))
    platforms = [wheelhouse.Platform.parse(p) for p in (args.platform or DEFAULT_PLATFORMS)] if plan.wheelhouse \
        else []
    folder = stage(replace(plan, extras=",".join(extras), config=None), wheel, tmp / "stage", platforms, bundle)
    tar_path = tmp / "upload.tar"
    with tarfile.open(tar_path, "w") as tar:
        for item in sorted(folder.iterdir()):
            tar.add(item, arcname=item.name)
    digests = tmp / "upload.digests.json"  # a host compares these with its current release before the upload
    digests.write_text(json.dumps(file_digests(folder), indent=1, sort_keys=True))
    say(f"upload {tar_path.stat().st_size / 2**20:.1f} MiB for "
        f"{', '.join(p.tag for p in platforms) or 'an online install'} (to the hosts that do not run it already)")
    return {"edge_audio_stage_tar": str(tar_path), "edge_audio_stage_digests": str(digests),
            "edge_audio_wheel": wheel.name, "edge_audio_wave": args.wave,
            "edge_audio_upload_id": f"up-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"}


def _host_configs(hosts: list[Host], tmp: Path) -> dict:
    """Each host's config file as it was checked, staged for the playbook's copy to the host."""
    folder = tmp / "configs"
    folder.mkdir()
    staged = {}
    for host in hosts:
        if host.config is not None:
            staged[host.name] = str(folder / f"{host.name}.toml")
            shutil.copyfile(host.config, staged[host.name])
    return {"edge_audio_config_files": staged}


def _play(cmd: list[str], hosts: list[str], log: ansible_run.Log, dry_run: bool) -> int:
    say(f"ansible-playbook {' '.join(cmd[1:])}; its output: {log.path}")
    progress = Progress(hosts, dry_run=dry_run)
    t0 = time.monotonic()
    code, stderr = ansible_run.run(cmd, log, progress)
    progress.flush()
    if progress.failures:
        lines = progress.failure_lines()
        for line in lines if len(lines) > 1 else []:
            say(line)
        raise InputError(progress.stopped(str(log.path)))
    if code != 0:
        raise InputError(f"ansible-playbook stopped (exit {code}): {ansible_run.first_error(stderr)}; its output: "
                         f"{log.path}")
    for row in progress.summary():
        say(row)
    say(f"rollout {'checked' if dry_run else 'finished'} after {time.monotonic() - t0:.0f} s")
    return 0
