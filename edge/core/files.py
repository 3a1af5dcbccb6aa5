"""Files: replacing one so that a reader sees the old one or the new one, never half of one; and reading one a
user named, refused with one line when it is not a regular file or larger than a file of its kind can be."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable


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


# Reading a file a user named (a config, a model, labels, a password, a WAV): regular files only, never more than
# the limit of its kind, and one line saying why not. A FIFO would block the reader until someone writes to it and
# a device such as /dev/zero never ends: both are refused before a byte is read.
KIB, MIB = 1 << 10, 1 << 20
LIMITS = {"config file": MIB, "calibration file": MIB, "label file": MIB, "password file": 4 * KIB,
          "model file": 512 * MIB, "manifest": MIB, "WAV file": 1024 * MIB}
KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def size_text(n: int) -> str:
    """A byte count as people read it: 4 KiB, 1 MiB, 1.5 GiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", KIB)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, from its st_mode: "a directory", "a named pipe (FIFO)"..."""
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def _not_regular(path, mode: int, what: str) -> str:
    kind = file_kind(mode)
    if kind == "a directory":
        return f"{path}: is a directory, not a {what}"
    return f"{path}: is {kind}, not a {what}: only regular files are read"


def open_regular(path: str | Path, what: str, error: Callable[[str], Exception], limit: int | None = -1) -> int:
    """A descriptor (blocking, close-on-exec) of the regular file at `path`, or error(one line) when it is missing,
    unreadable, not a regular file or larger than `limit` bytes (-1: LIMITS[what]; None: no limit). Checked before
    it is opened (opening a device can start it) and again once open (the name may have been swapped)."""
    limit = LIMITS.get(what) if limit == -1 else limit
    try:
        mode = os.stat(path).st_mode
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC) if stat.S_ISREG(mode) else -1
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    except ValueError:  # a NUL in the name
        raise error(f"{str(path)!r:.80}: a file name cannot hold a NUL character") from None
    if fd < 0:
        raise error(_not_regular(path, mode, what))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(_not_regular(path, st.st_mode, what))
        if limit is not None and st.st_size > limit:
            raise error(f"{path}: {what} too large ({st.st_size} bytes; at most {size_text(limit)})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(path: str | Path, what: str, error: Callable[[str], Exception], limit: int | None = -1,
              missing_ok: bool = False) -> bytes | None:
    """The bytes of a user-named file, through open_regular (the same refusals and limit); None for a missing
    file when `missing_ok`. A file that grows past its limit while it is read is refused too."""
    limit = LIMITS.get(what) if limit == -1 else limit
    if missing_ok and not os.path.lexists(path):
        return None
    fd = open_regular(path, what, error, limit)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read() if limit is None else f.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if limit is not None and len(data) > limit:
        raise error(f"{path}: {what} too large (more than {size_text(limit)})")
    return data


def read_text(path: str | Path, what: str, error: Callable[[str], Exception], limit: int | None = -1,
              missing_ok: bool = False) -> str | None:
    """read_file as UTF-8 text; error(one line) for bytes that are not UTF-8."""
    data = read_file(path, what, error, limit, missing_ok)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}: {what} is not UTF-8 text (line {line})") from None


def sha256():
    """A SHA-256 hasher: CPython's own (_sha2 from 3.12, _sha256 before) when there is one, else hashlib's. Importing
    hashlib maps OpenSSL's libcrypto (3.4 MB resident) into the process, which a daemon with TLS off needs for
    nothing else. Same digest."""
    try:
        from _sha2 import sha256 as new
    except ImportError:
        try:
            from _sha256 import sha256 as new
        except ImportError:
            from hashlib import sha256 as new
    return new()


def sha256_hex(data: bytes) -> str:
    digest = sha256()
    digest.update(data)
    return digest.hexdigest()


def file_sha256(path, fsync: bool = False) -> tuple[str, int]:
    """A file's sha256 and size, read in small blocks; with `fsync`, once it is on disk."""
    digest, size = sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
            size += len(block)
        if fsync:
            os.fsync(f.fileno())
    return digest.hexdigest(), size
