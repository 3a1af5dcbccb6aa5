"""What a device needs besides the code, shipped in the wheel: board profiles (profiles/*.toml), the systemd units
(systemd/), udev rules for the Coral (udev/) and ALSA snippets (alsa/). Read them through these functions: they work
from a source checkout, an installed wheel and a wheel on sys.path alike (importlib.resources)."""

from __future__ import annotations

from ..core.errors import InputError


def _file(relpath: str):
    from importlib import resources  # imports tempfile and random: only when a shipped file is read
    item = resources.files(__name__)
    for part in relpath.split("/"):
        item = item.joinpath(part)
    return item


def read_text(relpath: str) -> str:
    """A shipped file by its path below this package, e.g. 'systemd/edge-audio.service'."""
    try:
        return _file(relpath).read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InputError(f"{relpath}: not shipped with this edge-audio") from None


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in _file("profiles").iterdir() if p.name.endswith(".toml"))


def profile_text(name: str) -> str:
    """The board profile NAME (a complete daemon config), or InputError naming the ones there are."""
    if name not in profile_names():
        raise InputError(f"board profile {name!r} is not shipped; there are: {', '.join(profile_names())}")
    return read_text(f"profiles/{name}.toml")
