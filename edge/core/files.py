"""Replacing a file so that a reader sees the old one or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: str | Path, data: str | bytes, mode: int = 0o644, durable: bool = False) -> None:
    """Write `data` to a new file beside `path` and rename it over `path`. The new file has `mode` from the moment
    it exists (a secret is never readable by others on the way). `durable`: fsync it and its folder too, so a
    power cut keeps one of the two."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    commit_file(tmp, path, durable)


def commit_file(new: str | Path, path: str | Path, durable: bool = True) -> None:
    """Rename a finished file `new` over `path` (same folder); `durable`: fsync the file first and the folder
    after, so the rename itself survives a power cut."""
    if durable:
        with open(new, "rb") as f:
            os.fsync(f.fileno())
    os.replace(new, path)
    if durable:
        folder = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
