"""The upload a device receives: the project's wheel (+ an offline wheelhouse for its platform), the bundle and
the config, staged in one folder. Shared by deploy (one host over SSH) and the fleet rollout (Ansible)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import wheelhouse


def stage(plan, wheel: Path, folder: Path, platforms: list[wheelhouse.Platform]) -> Path:
    """The upload: wheels/ (+ the wheelhouse for the platforms given), bundle/, config.toml."""
    wheels = folder / "wheels"
    wheels.mkdir(parents=True)
    _link(wheel, wheels / wheel.name)
    for target in platforms:
        house = plan.wheelhouse / target.tag
        for f in wheelhouse.fill(house, wheel, wheelhouse.parse_extras(plan.extras), target):
            if not f.name.startswith("edge_audio-") and not (wheels / f.name).exists():
                _link(f, wheels / f.name)
    if plan.bundle:
        shutil.copytree(plan.bundle, folder / "bundle")
    if plan.config:
        shutil.copyfile(plan.config, folder / "config.toml")
    return folder


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
