"""What the deploy tests share: the project wheel, an offline wheelhouse for this machine's Debian Python and the
default bundle (from the asset mirror), each made once per test run; and `python -m tools deploy` against the sshd
devices of realssh.py. The devices' interpreter is Debian's /usr/bin/python3, as on a Raspberry Pi."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conftest import Result, run_cli

DEVICE_PYTHON = "/usr/bin/python3"
_MADE: dict = {}


@dataclass(frozen=True)
class Kit:
    wheel: Path
    wheelhouse: Path
    bundle: Path
    clip: Path  # a recording the test configs replay as their audio source


def kit(assets: Path) -> Kit:
    """Built on first use, then shared by every deploy test of this run."""
    if "kit" not in _MADE:
        from edge.model.fetch import install_default_bundle
        from tools.wheelhouse import build_project_wheel
        folder = Path(tempfile.mkdtemp(prefix="edge-audio-deploy-kit-"))
        wheel = build_project_wheel(folder / "dist")
        bundle = install_default_bundle(folder / "bundle", assets)
        _MADE["kit"] = Kit(wheel, folder / "wheelhouse", bundle, assets / "audio" / "miaow_16k.wav")
    return _MADE["kit"]


def wav_settings(k: Kit) -> list[str]:
    """Board profiles capture from ALSA; the test devices replay a recording instead."""
    return ["--set", "audio.source=wav", "--set", f"audio.file={k.clip}", "--set", "audio.realtime=false"]


def deploy(rig, k: Kit, *args, offline: bool = True, timeout: float = 900) -> Result:
    extra = ["--wheelhouse", str(k.wheelhouse)] if offline else []
    return run_cli("deploy", *args, "--ssh-config", rig.ssh_config, "--wheel", k.wheel, "--python", DEVICE_PYTHON,
                   *extra, module="tools", timeout=timeout)


def current_id(prefix: Path) -> str | None:
    link = prefix / "current"
    return Path(link.readlink()).name if link.is_symlink() else None


def release_ids(prefix: Path) -> list[str]:
    folder = prefix / "releases"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def release_info(prefix: Path, rid: str) -> dict:
    return json.loads((prefix / "releases" / rid / "release.json").read_text())


def selftest_current(prefix: Path, *extra: str) -> dict:
    """`edge-audio selftest` of what is current, run the way the release step runs it."""
    exe = prefix / "current" / "venv" / "bin" / "edge-audio"
    proc = subprocess.run([str(exe), "selftest", "--config", str(prefix / "current" / "config.toml"), "--json",
                           *extra], capture_output=True, text=True, timeout=300, cwd="/")
    report = json.loads(proc.stdout)
    report["exit"] = proc.returncode
    return report
