"""The spool's keeper: what the outbox does when its disk is full, read-only or gone, and the thread that checks on
the file, retries, and checkpoints its log (so neither the audio loop nor the network thread ever waits for that).

While the spool cannot be written, events wait in memory (counted in `unwritten`), and what the spool misses is
kept in memory too: rows delivered, dropped or set aside whose deletion did not reach the disk, dead letters, the
events open now. The marker beside the spool (spool_marker.py) holds that bookkeeping meanwhile, written in place,
so a crash leaves the next start enough to count what was lost, not to send delivered events again, and to end,
cut short, only the events whose end was never sent. When the disk is back the keeper writes it all, in this order:
the bookkeeping first (so nothing delivered can come back), then the events kept in memory, oldest first, a
SYNC_CHUNK at a time, checkpointing between them, so a nearly full disk takes what it can.

A spool file deleted while in use (found at the next event, or within CHECK_S) is made again, with its folder,
from memory: what was queued, the open events and the counters.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import threading
import time

from .spool_disk import CHECKPOINT_COMMITS, JOURNAL_LIMIT, WRITER_CHECKPOINT_BYTES, describe
from .spool_marker import to_ranges

log = logging.getLogger("edge.sinks")

CHECK_S = 5.0  # the keeper looks at the spool file (deleted? log too long?) this often
RETRY_MIN_S, RETRY_MAX_S = 1.0, 10.0  # while the spool cannot be written: the first retry, the longest gap
REMIND_S = 600.0  # a problem that lasts is logged again this often
SYNC_CHUNK = 32  # events kept in memory written per transaction once the disk is back


class SpoolKeeping:
    """The outbox's side of disk trouble (a mixin: the outbox's lock, queue and counters are its own)."""

    def __init__(self):
        self._trouble = ""  # why the spool cannot be written now ("": it can)
        self._vanished = False  # the file was deleted under us: make it again
        self._loaded = False  # what the spool held is in memory
        self._needs_settle = False  # the bookkeeping on disk lags what is in memory
        self._told_at_shutdown = False
        self._run = os.urandom(8).hex()  # this run, in the marker and in meta
        self._absorbed = ""  # the previous run whose marker this one took over
        self._mark_n = 0  # marker writes in this run
        self._since_mark = 0  # events written to the spool since the last marker write
        self._marker_failed = False
        self._kept_meanwhile = 0
        self._retry_in, self._retry_at, self._remind_at = RETRY_MIN_S, 0.0, 0.0
        self._keeper: _Keeper | None = None
        self._emptied = False  # the queue emptied since the keeper's last look: a good moment for a checkpoint

    # -- the keeper thread ---------------------------------------------------------------------------------------
    def start_keeper(self) -> None:
        self._keeper = _Keeper(self)
        self._keeper.start()

    def stop_keeper(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.stopping = True
            keeper.wake.set()
            keeper.join(10.0)

    def poke_keeper(self) -> None:
        if self._keeper is not None:
            self._keeper.wake.set()

    def _keeper_wait(self) -> float:
        if not self._trouble:
            return CHECK_S
        return min(CHECK_S, max(0.05, self._retry_at - time.monotonic()))

    def _tend(self) -> None:
        """One look: a deleted file, a retry when the disk is in trouble (and a reminder), or a checkpoint."""
        disk = self._disk
        if not self._trouble and disk.vanished():
            with self._lock:
                if not self._trouble:
                    self._lose_file()
        now = time.monotonic()
        if self._trouble:
            if now >= self._retry_at:
                ok = self.recover()
                self._retry_in = RETRY_MIN_S if ok else min(self._retry_in * 2, RETRY_MAX_S)
                self._retry_at = time.monotonic() + self._retry_in
            if self._trouble and now >= self._remind_at:
                self._remind_at = now + REMIND_S
                log.error("spool %s still cannot be written (%s): %d event(s) in memory only", self.path,
                          self._trouble, self.unwritten)
        elif disk.commits and (disk.commits >= CHECKPOINT_COMMITS or self._emptied or
                               disk.wal_bytes() > JOURNAL_LIMIT):
            self._checkpoint()  # an idle daemon's heartbeats wait for CHECKPOINT_COMMITS of them
        self._emptied = False

    def _checkpoint(self) -> None:
        try:
            if self._disk.db is not None:
                self._disk.checkpoint()
        except sqlite3.Error:
            pass  # a full disk: the file cannot grow; nothing is lost, the next look tries again

    # -- trouble -------------------------------------------------------------------------------------------------
    def _enter_trouble(self, exc: BaseException) -> None:
        """The spool cannot be written: say it once, with the cause (under the lock)."""
        cause = describe(self.path, exc)
        if self._trouble:
            self._trouble = cause
            return
        self._begin_trouble(cause)
        log.error("spool %s: cannot write (%s): events are kept in memory until it can be written again; a crash "
                  "or a shutdown meanwhile loses them (counted at the next start)", self.path, cause)

    def _begin_trouble(self, cause: str) -> None:
        now = time.monotonic()
        self._trouble, self._kept_meanwhile = cause, 0
        self._retry_in, self._retry_at, self._remind_at = RETRY_MIN_S, now + RETRY_MIN_S, now + REMIND_S
        self.poke_keeper()

    def _lose_file(self) -> None:
        """The spool file was deleted (or replaced) under us: everything queued is in memory only until the keeper
        makes it again (under the lock)."""
        for msg in self._items:
            msg.seq = 0
        self.unwritten = len(self._items)
        self._gone, self._dead, self._vanished = [], [], True
        self._begin_trouble(f"the file was deleted while in use ({describe(self.path, None)})"
                            if not os.path.isdir(os.path.dirname(self.path) or ".") else
                            "the file was deleted while in use")
        log.error("spool %s was deleted while in use: making it again from memory (%d event(s) queued)",
                  self.path, len(self._items))

    def recover(self) -> bool:
        """Write what the spool missed, a step at a time (the lock is let go between steps). True once it is all on
        disk and the spool is in use again."""
        while True:
            step = self._recover_step()
            if step != "more":
                return step == "done"
            self._checkpoint()
            if self._keeper is not None and self._keeper.stopping:
                return False

    def _recover_step(self) -> str:
        with self._lock:
            if not self._trouble:
                return "done"
            try:
                if self._vanished or self._disk.db is None:
                    self._reconnect()
                if self._needs_settle or self._gone or self._dead or self._lost_unrecorded:
                    self._settle()
                    return "more"
                if self.unwritten:
                    self._write_chunk()
                    return "more"
            except (sqlite3.Error, OSError) as exc:
                self._trouble = describe(self.path, exc)
                return "failed"
            log.warning("spool %s can be written again: %d event(s) kept in memory meanwhile are on disk",
                        self.path, self._kept_meanwhile)
            self._trouble = ""
            self._mark_clean()
            return "done"

    def _reconnect(self) -> None:
        """Open the file again (made again, with its folder, if it was deleted); load it if the start could not."""
        self._disk.connect()
        if not self._loaded:
            self._take(self._disk.load(), self._marker.open(), late=True)
        elif self._vanished:
            self._marker.open()  # a new one beside the new file: what the old one held is in memory
        self._vanished = False
        self._needs_settle = True

    def _settle(self) -> None:
        """The bookkeeping the disk missed, in one transaction (under the lock)."""
        rows: dict[str, str] = {}
        for label, payload in self._open_starts():
            rows.setdefault(label, payload)  # the oldest of a label: its end comes before the next start
        self._disk.settle(self._gone, rows, self._dead, self._meta())
        self._gone, self._dead, self._lost_unrecorded, self._needs_settle = [], [], 0, False

    def _write_chunk(self) -> None:
        """The oldest events kept in memory, in one transaction (under the lock)."""
        first = len(self._items) - self.unwritten
        batch = list(itertools.islice(self._items, first, first + SYNC_CHUNK))
        self._since_mark += len(batch)
        try:
            seqs = self._disk.write_events([(m.topic, m.payload, {"type": m.kind, "label": m.label} if m.kind in
                                             ("start", "end") else None) for m in batch], self._meta())
        except BaseException:
            self._since_mark -= len(batch)
            raise
        for msg, seq in zip(batch, seqs):
            msg.seq = seq
            if msg.kind == "end":
                self._open.pop(msg.event_key, None)
        self.unwritten -= len(batch)
        self._kept_meanwhile += len(batch)

    def _meta(self) -> dict:
        return {"set_aside_count": str(self.set_aside_count), "lost_events": str(self.lost),
                "last_alive": repr(time.time()), "marker_synced": f"{self._run}:{self._mark_n}:{self._since_mark}",
                "marker_absorbed": self._absorbed}

    def _open_starts(self) -> list[tuple[str, str]]:
        """(label, start payload) of the open events whose start is on disk or delivered: a start only in memory
        is not open for anyone yet."""
        first = len(self._items) - self.unwritten
        waiting = {m.event_key for m in itertools.islice(self._items, first, None) if m.kind == "start"}
        return [v for k, v in self._open.items() if k not in waiting]

    def _committed(self) -> None:
        if self._disk.wal_bytes() > WRITER_CHECKPOINT_BYTES:
            try:  # the keeper cannot keep up: the log must not grow past WAL_BOUND
                self._disk.checkpoint(writer=True)
            except sqlite3.Error:
                pass
        elif self._disk.commits >= CHECKPOINT_COMMITS:
            self.poke_keeper()

    # -- the marker ----------------------------------------------------------------------------------------------
    def _mark(self, durable: bool) -> None:
        """The bookkeeping the spool lacks now, into the marker (under the lock)."""
        if self._marker is None or not self._loaded:
            return
        self._mark_n += 1
        self._since_mark = 0
        state = {"v": 1, "run": self._run, "n": self._mark_n, "dirty": True, "unwritten": self.unwritten,
                 "lost": self._lost_unrecorded, "set_aside": self.set_aside_count, "alive": time.time(),
                 "gone": to_ranges(self._gone), "open": [p for _label, p in self._open_starts()]}
        if not self._marker.write(state, durable) and not self._marker_failed:
            self._marker_failed = True
            log.error("spool %s: its marker %s cannot be written either: a crash now loses events the next start "
                      "cannot count", self.path, self._marker.path)

    def _mark_clean(self) -> None:
        self._mark_n += 1
        self._since_mark = 0
        if self._marker is not None:
            self._marker.write({"v": 1, "run": self._run, "n": self._mark_n, "dirty": False}, durable=True)

    def marker_kept(self) -> bool:
        """What a shutdown loses now can be counted at the next start."""
        return self._marker is not None and self._marker.usable and not self._marker_failed and not self._vanished


class _Keeper(threading.Thread):
    def __init__(self, owner: SpoolKeeping):
        super().__init__(name="spool", daemon=True)
        self.owner = owner
        self.wake = threading.Event()
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            self.wake.wait(self.owner._keeper_wait())
            self.wake.clear()
            if self.stopping:
                break
            try:
                self.owner._tend()
            except Exception:  # a bug: say it, and keep looking after the spool
                log.exception("spool keeper")
