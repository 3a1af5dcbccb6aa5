"""Releases on a device: the folder layout, the atomic `current` switch, listing, pruning and fingerprints.

    PREFIX/releases/<UTC time>-<version>/   one immutable release: venv/, config.toml, bundle/, wheels/,
                                            edge-audio.service, udev/, release.json, install.log; a rejected
                                            release keeps release.json (with the reason) and install.log only
    PREFIX/current -> releases/<id>         switched with rename(2) of a new symbolic link, never unlinked first
    PREFIX/state/                           EDGE_AUDIO_HOME: event spool, site calibration, the bundle a
                                            release without its own uses (models/yamnet-coral)
    PREFIX/etc/                             credentials (mqtt_password), mode 0700; never inside a release
    PREFIX/incoming/                        uploads waiting to become a release
    PREFIX/.install.lock                    flock(2)-ed by the install that runs, for all of it (InstallLock)

Standard library only: this runs from the wheel itself on a device that has no venv yet.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...core.errors import InputError
from ...core.files import replace_file, sha256

RELEASE_FILE = "release.json"
INSTALL_LOG = "install.log"
RECORD = (RELEASE_FILE, INSTALL_LOG)  # what a rejected release keeps: why it was rejected, and how the install went
RECORDS_KEPT = 10  # rejected releases whose record is kept (the newest)
DEFAULT_BUNDLE = "models/yamnet-coral"  # under the state folder: where the daemon looks when no bundle is named
OK, REJECTED, INSTALLING = "ok", "rejected", "installing"
INSTALL_LOCK = ".install.lock"  # under the prefix: who installs now (pid, release, since), as JSON
INTERRUPTED = "install interrupted (the installing process ended before it finished)"
LOCK_PATIENCE_S = 1.0  # a probe (list, prune) holds the lock for microseconds: an install waits that out
_HELD: dict[str, str | None] = {}  # install locks this process holds -> the release it installs under each


@dataclass(frozen=True)
class Layout:
    prefix: Path

    @classmethod
    def at(cls, prefix: str) -> "Layout":
        path = Path(prefix).expanduser()
        if not path.is_absolute():
            raise InputError(f"--prefix {prefix}: give an absolute path (or ~/...)")
        return cls(path)

    @property
    def releases(self) -> Path:
        return self.prefix / "releases"

    @property
    def current(self) -> Path:
        return self.prefix / "current"

    @property
    def state(self) -> Path:
        return self.prefix / "state"

    @property
    def secrets(self) -> Path:
        return self.prefix / "etc"

    @property
    def incoming(self) -> Path:
        return self.prefix / "incoming"

    def create(self) -> None:
        for folder in (self.releases, self.state, self.incoming):
            folder.mkdir(parents=True, exist_ok=True)
        self.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.secrets, 0o700)


@dataclass
class Release:
    id: str
    path: Path
    info: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.info.get("status", "unknown")

    @property
    def fingerprint(self) -> str:
        return self.info.get("fingerprint", "")

    def save(self, **updates) -> None:
        self.info.update(updates)
        replace_file(self.path / RELEASE_FILE, json.dumps(self.info, indent=2, sort_keys=True) + "\n")


def load_release(path: Path) -> Release:
    try:
        info = json.loads((path / RELEASE_FILE).read_text())
    except (OSError, ValueError):
        info = {"status": "unknown"}
    return Release(path.name, path, info)


def list_releases(layout: Layout) -> list[Release]:
    """Every release, oldest first (ids start with the UTC time they were made)."""
    if not layout.releases.is_dir():
        return []
    return [load_release(p) for p in sorted(layout.releases.iterdir()) if p.is_dir()]


def current_release(layout: Layout) -> Release | None:
    try:
        target = os.readlink(layout.current)
    except OSError:
        return None
    path = (layout.prefix / target).resolve()
    return load_release(path) if path.is_dir() else None


def previous_good(layout: Layout, before: Release | None) -> Release | None:
    """The newest release that passed its checks and is older than `before` (for a rollback)."""
    good = [r for r in list_releases(layout) if r.status == OK and (before is None or r.id < before.id)]
    return good[-1] if good else None


def new_release_id(layout: Layout, version: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = f"{stamp}-{version}"
    rid, n = base, 1
    while (layout.releases / rid).exists():
        n += 1
        rid = f"{base}.{n}"
    return rid


def switch(layout: Layout, release: Release | None) -> None:
    """Point `current` at `release` atomically: a new link, then rename(2) over the old one. None removes it."""
    if release is None:
        layout.current.unlink(missing_ok=True)
        return
    tmp = layout.prefix / f".current.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.join("releases", release.id), tmp)
    os.replace(tmp, layout.current)


def prune(layout: Layout, keep: int) -> list[str]:
    """Delete all but the `keep` newest good releases (never the current one, nor one being installed; one with
    an unreadable release.json goes too); rejected releases, and abandoned installs (reclaim_abandoned), are
    reduced to their record (drop_old_records). The ids removed."""
    if keep < 1:
        raise InputError("--keep must be at least 1")
    reclaim_abandoned(layout)
    current = current_release(layout)
    releases = list_releases(layout)
    good = [r for r in releases if r.status == OK]
    keep_ids = {r.id for r in good[-keep:]} | ({current.id} if current else set())
    removed = []
    for r in releases:
        if r.id not in keep_ids and r.status not in (REJECTED, INSTALLING):
            shutil.rmtree(r.path, ignore_errors=True)
            removed.append(r.id)
    return removed + drop_old_records(layout)


def drop_old_records(layout: Layout) -> list[str]:
    """Rejected releases keep their record only (release.json, install.log), and only the RECORDS_KEPT newest:
    older ones are removed. The ids removed."""
    current = current_release(layout)
    rejected = [r for r in list_releases(layout) if r.status == REJECTED and not (current and r.id == current.id)]
    removed = []
    for n, r in enumerate(rejected):
        if n < len(rejected) - RECORDS_KEPT:
            shutil.rmtree(r.path, ignore_errors=True)
            removed.append(r.id)
        else:
            strip(r)
    return removed


def strip(release: Release) -> int:
    """Remove everything of a release but its record (RECORD); the bytes freed."""
    freed = 0
    for item in release.path.iterdir():
        if item.name in RECORD:
            continue
        freed += tree_size(item)
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
    return freed


class InstallLock:
    """The prefix's install lock (flock(2) on PREFIX/.install.lock), held for a whole install; the OS lets it go
    when the process ends, however it ends. A second install is refused while it is held, and a release still
    "installing" while nobody holds it was abandoned (reclaim_abandoned)."""

    def __init__(self, layout: Layout):
        self.path = layout.prefix / INSTALL_LOCK
        self.since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._fd: int | None = None

    def __enter__(self) -> "InstallLock":
        import fcntl  # here: Unix only, and only an install needs it
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_PATIENCE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                holder = _holder(fd)
                os.close(fd)
                raise InputError(f"another install is running (pid {holder.get('pid', '?')}, release "
                                 f"{holder.get('release') or '?'}, since {holder.get('since', '?')})") from None
        self._fd = fd
        self.note(None)
        return self

    def note(self, release: str | None) -> None:
        """Name the release this install makes (a refused install says it; reclaim_abandoned leaves it alone)."""
        assert self._fd is not None
        _HELD[str(self.path)] = release
        data = json.dumps({"pid": os.getpid(), "release": release, "since": self.since}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def __exit__(self, *exc) -> None:
        _HELD.pop(str(self.path), None)
        if self._fd is not None:
            os.close(self._fd)  # lets go of the lock; the file stays (removing a lock file races)
            self._fd = None


def _holder(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def install_running(layout: Layout) -> bool:
    """Whether an install holds the prefix's lock (this process's own install included)."""
    path = layout.prefix / INSTALL_LOCK
    if str(path) in _HELD:
        return True
    import fcntl
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (lets go of the shared lock, when it was taken)
    return False


def reclaim_abandoned(layout: Layout) -> dict[str, int]:
    """Releases left "installing" by an install whose process ended before it finished (no install of another
    process holds the lock) are marked rejected (INTERRUPTED) and reduced to their record, as a rejected release.
    Never the current one (a process that died checking its health leaves it current), nor the release this
    process is installing. Release id -> bytes freed."""
    path = str(layout.prefix / INSTALL_LOCK)
    if path in _HELD:
        own = _HELD[path]
    elif install_running(layout):
        return {}
    else:
        own = None
    current = current_release(layout)
    freed = {}
    for r in list_releases(layout):
        if r.status == INSTALLING and r.id != own and not (current and r.id == current.id):
            r.save(status=REJECTED, reason=INTERRUPTED)
            freed[r.id] = strip(r)
    return freed


def tree_size(path: Path) -> int:
    """Bytes of the files under `path` (each hard-linked file counted where it is met)."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


# -- fingerprints: what a release is made of, independent of file times ---------------------------------------------
def file_digest(path: Path) -> str:
    digest = sha256()
    if path.suffix == ".whl":  # a wheel's zip holds build times: hash its members instead
        import zipfile  # here: the command line imports this module to build its parser, the daemon included
        with zipfile.ZipFile(path) as z:
            for name in sorted(z.namelist()):
                member = sha256()
                member.update(z.read(name))
                digest.update(name.encode() + b"\0" + member.digest())
        return digest.hexdigest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install_options(profile: str | None, settings: list[str], extras: str, system_site_packages: bool,
                    service: str) -> dict:
    """The install options that are part of a release's identity (the host computes the same to skip uploads)."""
    return {"profile": profile or "", "set": list(settings), "extras": extras,
            "system_site_packages": bool(system_site_packages), "service": service}


def file_digests(stage: Path) -> dict[str, str]:
    """Each staged file (its path in the stage) -> the digest of its content; what a fingerprint is made of."""
    return {p.relative_to(stage).as_posix(): file_digest(p) for p in stage.rglob("*")
            if p.is_file() and p.relative_to(stage).as_posix() != RELEASE_FILE}


def fingerprint(stage: Path, options: dict) -> str:
    """sha256 over every staged file's content and the install options: equal fingerprints = the same release."""
    return fingerprint_of(file_digests(stage), options)


def fingerprint_of(digests: dict[str, str], options: dict) -> str:
    """The fingerprint of a stage described by its file digests (a fleet host compares before it uploads)."""
    digest = sha256()
    digest.update(json.dumps(options, sort_keys=True).encode())
    for rel in sorted(digests, key=lambda rel: rel.split("/")):  # in path order, as it always was
        digest.update(rel.encode() + b"\0" + digests[rel].encode())
    return digest.hexdigest()


def project_wheel(folder: Path) -> Path:
    wheels = sorted(folder.glob("edge_audio-*.whl"))
    if len(wheels) != 1:
        raise InputError(f"{folder}: expected one edge_audio-*.whl, found {len(wheels)}")
    return wheels[0]


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]
