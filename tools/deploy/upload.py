"""The upload a device receives: the project's wheel (+ an offline wheelhouse for its platform), the bundle and
the config, staged in one folder. Shared by deploy (one host over SSH) and the fleet rollout (Ansible). A device
with no model bundle of its own gets the default one (DefaultBundle)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

from edge.core.errors import InputError

from . import wheelhouse


class DefaultBundle:
    """The default model bundle, for devices that have none: this machine's installed copy (every file checked
    against its sha256), else installed from the asset mirror ($EDGE_AUDIO_ASSETS, sha256-pinned) into
    `scratch`. Found once, when first asked for."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self._found: tuple[Path, str] | None = None

    def find(self, device: str) -> tuple[Path, str]:
        """(the bundle, where it came from); InputError naming the device when this machine has none."""
        if self._found is None:
            from edge.model import assets
            from edge.model.bundle import default_bundle_path, is_bundle, load_bundle
            installed, mirror = default_bundle_path(), assets.mirror_root()
            if is_bundle(installed):
                load_bundle(installed)
                self._found = installed, f"this machine's installed copy {installed}"
            elif mirror is not None:
                with contextlib.redirect_stderr(io.StringIO()):  # its line per file: the caller says one
                    path = assets.install_default_bundle(self.scratch / installed.name, mirror)
                self._found = path, f"the asset mirror {mirror} (sha256 verified)"
            else:
                raise InputError(f"{device}: no model bundle on the device and none here to ship: install it here "
                                 "with 'python -m tools fetch' (or set EDGE_AUDIO_ASSETS to the asset mirror), or "
                                 "give --bundle DIR")
        return self._found

    def labels(self) -> Path | None:
        """The default bundle's label file, from the installed copy or the mirror (sha256-pinned); None when
        this machine has neither."""
        from edge.model import assets
        from edge.model.bundle import default_bundle_path, is_bundle, load_bundle
        if is_bundle(default_bundle_path()):
            return load_bundle(default_bundle_path(), verify=False).labels
        mirror = assets.mirror_root()
        return assets.fetch(assets.CLASS_MAP, self.scratch / "labels", mirror, quiet=True) if mirror else None


def stage(plan, wheel: Path, folder: Path, platforms: list[wheelhouse.Platform], bundle: Path | None = None) -> Path:
    """The upload: wheels/ (+ the wheelhouse for the platforms given), bundle/ (`bundle`, else the plan's),
    config.toml."""
    wheels = folder / "wheels"
    wheels.mkdir(parents=True)
    _link(wheel, wheels / wheel.name)
    for target in platforms:
        house = plan.wheelhouse / target.tag
        for f in wheelhouse.fill(house, wheel, wheelhouse.parse_extras(plan.extras), target):
            if not f.name.startswith("edge_audio-") and not (wheels / f.name).exists():
                _link(f, wheels / f.name)
    bundle = bundle or plan.bundle
    if bundle:
        shutil.copytree(bundle, folder / "bundle")
    if plan.config:
        shutil.copyfile(plan.config, folder / "config.toml")
    return folder


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
