"""`python -m tools deploy --inventory FILE`: build one upload for the whole fleet (wheelhouses for every platform
asked for), then let Ansible roll it out with firmware_configs/ansible/deploy.yml (one canary, then waves)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from edge.app.command import sayer
from edge.core.errors import InputError
from tools import REPO

from . import wheelhouse
from .upload import stage

PLAYBOOK = REPO / "firmware_configs" / "ansible" / "deploy.yml"
DEFAULT_PLATFORMS = ("x86_64-cp311", "aarch64-cp311")


say = sayer("deploy")


def ansible_playbook() -> str:
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if beside.is_file() else shutil.which("ansible-playbook")
    if not found:
        raise InputError("ansible-playbook not found: pip install 'ansible-core>=2.14' (it is in the dev extra)")
    return found


def rollout(args, plan) -> int:
    inventory = Path(args.inventory)
    if not inventory.is_file():
        raise InputError(f"--inventory {inventory}: file not found")
    if args.targets or args.list or args.rollback or plan.settings:
        raise InputError("with --inventory, devices, --device-id, --broker and --set come from the inventory "
                         "(edge_audio_device_id, edge_audio_broker, edge_audio_set); --list/--rollback are per host")
    if plan.calibrate_only:
        raise InputError("with --inventory, --calibrate follows a rollout: name the board profile (--profile) too")
    playbook = ansible_playbook()
    platforms = [wheelhouse.Platform.parse(p) for p in (args.platform or DEFAULT_PLATFORMS)] if plan.wheelhouse else []
    wheel = Path(args.wheel) if args.wheel else wheelhouse.build_project_wheel(Path("out/deploy"))
    with tempfile.TemporaryDirectory(prefix="edge-audio-fleet-") as tmp:
        folder = stage(plan, wheel, Path(tmp) / "stage", platforms)
        tar_path = Path(tmp) / "upload.tar"
        with tarfile.open(tar_path, "w") as tar:
            for item in sorted(folder.iterdir()):
                tar.add(item, arcname=item.name)
        say(f"upload {tar_path.stat().st_size / 2**20:.1f} MiB for "
            f"{', '.join(p.tag for p in platforms) or 'an online install'}")
        variables = {"edge_audio_stage_tar": str(tar_path), "edge_audio_wheel": wheel.name,
                     "edge_audio_upload_id": f"up-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}",
                     "edge_audio_extras": plan.extras, "edge_audio_keep": plan.keep,
                     "edge_audio_service": plan.service, "edge_audio_wave": args.wave}
        if plan.profile:
            variables["edge_audio_default_profile"] = plan.profile
        if plan.password_file:
            variables["edge_audio_password_file"] = str(Path(plan.password_file).resolve())
        if plan.calibrate is not None:  # each host calibrates after its install, in its wave
            variables["edge_audio_calibrate_minutes"] = plan.calibrate
            if plan.false_starts_per_day is not None:
                variables["edge_audio_false_starts_per_day"] = plan.false_starts_per_day
        if args.prefix != "/opt/edge-audio":
            variables["edge_audio_prefix"] = args.prefix
        if plan.config:
            raise InputError("with --inventory, use a board profile per host (edge_audio_profile) and edge_audio_set;"
                             " a single --config for the whole fleet is not supported")
        (Path(tmp) / "vars.json").write_text(json.dumps(variables))
        cmd = [playbook, "-i", str(inventory), str(PLAYBOOK), "-e", f"@{Path(tmp) / 'vars.json'}"]
        if args.ssh_config:
            cmd += ["--ssh-common-args", f"-F {args.ssh_config}"]
        if plan.dry_run:
            cmd.append("--check")
        say("ansible-playbook " + " ".join(cmd[1:]))
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0"))
        say(f"rollout {'finished' if proc.returncode == 0 else 'stopped'} after {time.monotonic() - t0:.0f} s")
    if proc.returncode != 0:
        raise InputError(f"the rollout stopped (ansible-playbook exit {proc.returncode}): a host that failed its "
                         "install was switched back (one that failed its calibration keeps the new release and its "
                         "previous calibration); hosts after it keep their release")
    return 0
