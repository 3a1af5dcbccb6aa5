"""The spool's marker: a small file beside the spool (spool.db.pending) that holds the bookkeeping the spool could
not take while its disk was full.

The file is made at its full size (MARKER_BYTES) while the disk is fine, and afterwards only ever overwritten in
place: rewriting blocks a file already has needs no free space, so it can still be written when the file system is
full (on file systems that rewrite in place, such as ext4 and tmpfs; not on copy-on-write ones such as btrfs). It says
how many events were kept in memory only (lost if the process dies now), which delivered events the spool still
holds, which events are open, and how many events a previous shutdown lost. A read-only or vanished disk takes the
marker with it: then nothing can be kept for the next run, and the running daemon says so.
"""

from __future__ import annotations

import json
import os

MARKER_BYTES = 16384
MARKER_SUFFIX = ".pending"


def to_ranges(numbers) -> list[list[int]]:
    """Sorted [first, last] runs of the integers in `numbers` (deliveries remove rows in order: a few runs)."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return runs


def from_ranges(runs) -> list[int]:
    """The integers of to_ranges() output; anything malformed is left out."""
    out: list[int] = []
    for run in runs if isinstance(runs, list) else ():
        if isinstance(run, list) and len(run) == 2 and all(isinstance(x, int) and x > 0 for x in run) and \
                run[0] <= run[1] and run[1] - run[0] < 10_000_000:
            out.extend(range(run[0], run[1] + 1))
    return out


def count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def lost_by(marker: dict, meta: dict) -> tuple[int, bool]:
    """Events a previous run lost, by its marker and how far the spool got after it; and whether the marker is
    newer than the spool (its deliveries and open events apply)."""
    if marker["run"] == meta.get("marker_absorbed"):
        return 0, False  # a later run took it over already
    unwritten, lost, n = count(marker.get("unwritten")), count(marker.get("lost")), count(marker.get("n"))
    synced = str(meta.get("marker_synced", "")).split(":")
    if len(synced) == 3 and synced[0] == marker["run"] and synced[1].isdigit() and synced[2].isdigit():
        if n < int(synced[1]):
            return 0, False  # the spool got further than the marker: nothing was left in memory only
        if n == int(synced[1]):
            return max(0, unwritten - int(synced[2])), False  # some were written after it
    return unwritten + lost, True


class Marker:
    """open() reads what the previous run left and keeps the file open; write() overwrites it in place."""

    def __init__(self, spool_path: str):
        self.path = spool_path + MARKER_SUFFIX
        self._fd: int | None = None
        self.overflow = 0  # open events left out of the last write (it did not fit)

    @property
    def usable(self) -> bool:
        return self._fd is not None

    def open(self) -> dict | None:
        """Open (or make, at its full size) the marker; return what a previous run wrote in it (None: nothing, or
        not readable). Never raises: without a marker the spool works, with less kept across a crash."""
        self.close()
        previous = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None
        try:
            data = os.pread(fd, MARKER_BYTES, 0)
            previous = _parse(data)
            if len(data) < MARKER_BYTES:
                os.pwrite(fd, data + b" " * (MARKER_BYTES - len(data)), 0)  # the blocks it rewrites later
                os.fsync(fd)
        except OSError:
            os.close(fd)
            return previous
        self._fd = fd
        return previous

    def write(self, state: dict, durable: bool) -> bool:
        """Overwrite the marker with `state` (its 'open' list shortened if the whole does not fit); `durable`:
        fdatasync before returning. False when it could not be written."""
        if self._fd is None:
            return False
        data, self.overflow = _encode(state)
        try:
            os.pwrite(self._fd, data, 0)
            if durable:
                os.fdatasync(self._fd)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


def _encode(state: dict) -> tuple[bytes, int]:
    opened = list(state.get("open", ()))
    left_out = 0
    while True:
        data = json.dumps({**state, "open": opened}, separators=(",", ":")).encode()
        if len(data) <= MARKER_BYTES or not opened:
            return data[:MARKER_BYTES].ljust(MARKER_BYTES), left_out
        opened.pop(0)  # the oldest go first: the newest are the likeliest still sounding
        left_out += 1


def _parse(data: bytes) -> dict | None:
    try:
        value = json.loads(data.decode("utf-8").strip() or "null")
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
