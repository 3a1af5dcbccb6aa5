"""The event outbox: bounded, ordered, thread-safe, and kept in a crash-safe spool on disk.

The audio loop appends; the network thread sends the head and removes it once the broker acknowledged it. With a
spool file (SQLite, spool_disk.py) an event is on disk, fsynced, before append() returns, so a kill, a watchdog
abort or a power cut loses nothing that was produced. Marking an event delivered is not fsynced by itself (the next
event's commit syncs it): a power cut may send it again, never lose it. The spool also keeps which events are open (a
start whose end is neither on disk nor delivered), so the next start can end them, marked as cut short.

A disk that is full, read-only or gone does not stop anything: the spool says so once (and again every REMIND_S),
keeps events in memory meanwhile, counts them (`unwritten`) and writes them, in order, with the bookkeeping it
missed (deliveries, open events, dead letters), as soon as it can again; a spool file deleted while in use is made
again from memory. What a crash or a shutdown loses meanwhile is counted beside the spool (spool_marker.py) and
shows in `lost` at the next start. The spool keeper (spool_keeper.py) does the retrying and the checkpoints.

A spool that cannot be read never prevents a start: a corrupt record is skipped and counted; a file that is not
a database is moved aside, reported, and a new one is started.
"""

from __future__ import annotations

import collections
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.paths import state_directory
from . import spool_disk
from .spool_disk import DEAD_LETTERS_KEPT, Loaded, SpoolFile, is_disk_error, meta_number, meta_time, move_aside
from .spool_keeper import SpoolKeeping
from .spool_marker import Marker, count, from_ranges, lost_by
from .spool_records import CLIP_KIND, event_key, event_record, open_record, open_row, sane_time

log = logging.getLogger("edge.sinks")


def default_spool_path() -> Path:
    """spool.db in the state directory (edge/core/paths.py: $STATE_DIRECTORY, $EDGE_AUDIO_HOME,
    $XDG_STATE_HOME/edge-audio or ~/.local/state/edge-audio)."""
    return state_directory() / "spool.db"


def spool_path(setting: str) -> str | None:
    """The spool file for the mqtt.spool_file setting ('' = the default place, 'none' = memory only)."""
    if setting.strip().lower() == "none":
        return None
    return setting or str(default_spool_path())


@dataclass(eq=False)
class Message:
    topic: str
    payload: str
    qos: int = 0
    retain: bool = False
    seq: int = 0  # its row in the spool (0: in memory only)
    kind: str = ""  # an event's type ("start" / "end"), or "clip" for a clip's reference (clipsend.py)
    label: str = ""  # an event's open_events row (spool_records.open_row: its label, and its source if it has one)
    event_key: str = ""  # the event it starts or ends (spool_records.event_key)


class Outbox(SpoolKeeping):
    def __init__(self, max_items: int, policy: str = "drop_oldest", path: str | None = None):
        self.max_items = max_items
        self.policy = policy  # "drop_oldest" | "drop_newest"
        self.path = path  # None: memory only
        self.dropped = 0
        self.appended = 0
        self.recovered = 0  # events a previous run left undelivered
        self.corrupt = 0  # spool records that could not be read (skipped)
        self.set_aside_count = 0  # events the broker will never take, kept in dead_letter (this run and earlier)
        self.lost = 0  # events lost while the spool could not be written (a crash, a shutdown; every run)
        self.unwritten = 0  # events queued in memory only now: the spool cannot take them
        self.open_events: dict[str, dict] = {}  # event key -> start payload, as the previous run left them
        self.last_alive = 0.0  # unix time the previous run last wrote to the spool
        self._items: collections.deque[Message] = collections.deque()
        self._lock = threading.Lock()
        self._busy_head: Message | None = None  # in flight: never dropped to make room
        self._open: dict[str, tuple[str, str]] = {}  # event key -> (label, start payload): its end is neither on
        # disk nor delivered
        self._gone: list[int] = []  # rows delivered, dropped or set aside whose deletion is not on disk yet
        self._dead: list[tuple] = []  # dead letters not on disk yet
        self._lost_unrecorded = 0  # of `lost`, not in the spool's meta yet
        self._disk: SpoolFile | None = None
        self._marker: Marker | None = None
        self._open_problem = ""
        SpoolKeeping.__init__(self)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        with self._lock:
            return iter(list(self._items))

    @property
    def problem(self) -> str:
        """What is wrong with the spool now, or what was wrong with it at start ("": nothing)."""
        if self._trouble:
            return f"spool {self.path}: cannot write ({self._trouble}); {self.unwritten} event(s) in memory only"
        return self._open_problem

    # -- opening -------------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Open (or create) the spool and load what a previous run left. Never raises for a bad file or disk."""
        if not self.path:
            return
        self._disk, self._marker = SpoolFile(self.path), Marker(self.path)
        with self._lock:
            loaded = self._first_load()
            if loaded is not None:
                self._take(loaded, self._marker.open())
                self._settle_at_start()
        self.start_keeper()

    def check(self, warn) -> str:
        """Can the spool be used? Its folder is made and written to; an existing file is read, not loaded (the
        running service may hold it). What run would survive (memory only, a file moved aside) is a warning."""
        if not self.path:
            warn("mqtt.spool_file = 'none': events wait in memory only and a restart loses them")
            return "spool: memory only"
        return spool_disk.check(self.path, warn)

    def _first_load(self) -> Loaded | None:
        """What the spool holds; a file that is not one is moved aside. None: the disk cannot be used now (the
        keeper loads it once it can)."""
        try:
            self._disk.connect()
            return self._disk.load()
        except (sqlite3.Error, OSError) as exc:
            self._disk.close()
            if is_disk_error(exc) and not Path(self.path).is_dir():
                self._enter_trouble(exc)
                return None
            aside = move_aside(self.path)
            self._open_problem = f"spool {self.path} was unreadable ({exc}); {aside}; started a new one"
            log.error("%s", self._open_problem)
        try:
            self._disk.connect()
        except (sqlite3.Error, OSError) as exc:
            self._disk.close()
            self._enter_trouble(exc)
            return None
        return Loaded()

    def _take(self, loaded: Loaded, previous: dict | None, late: bool = False) -> None:
        """Queue what the spool held, corrected by the marker a previous run left (rows it had delivered, events
        it had open, events it lost); `late`: loaded after this run began (its own events stay behind them)."""
        meta = loaded.meta
        alive, set_aside, lost = meta_time(meta, "last_alive"), meta_number(meta, "set_aside_count"), \
            meta_number(meta, "lost_events")
        corrupt = loaded.corrupt + (alive, set_aside, lost).count(None)
        gone, opened, lost_before = set(loaded.bad_rows), dict(loaded.open), 0
        self._needs_settle = self._needs_settle or bool(loaded.bad_rows or corrupt)
        if isinstance(previous, dict) and previous.get("dirty") is True and isinstance(previous.get("run"), str):
            lost_before, applies = lost_by(previous, meta)
            self._absorbed = previous["run"]
            if applies:
                gone.update(from_ranges(previous.get("gone")))
                opened = {event_key(s): p for p in previous.get("open") or () if (s := open_record(p)) is not None}
                set_aside = max(set_aside or 0, count(previous.get("set_aside")))
                alive = max(alive or 0.0, sane_time(previous.get("alive")) or 0.0)
            self._needs_settle = True
        items = [_message(seq, topic, payload) for seq, topic, payload in loaded.rows if seq not in gone]
        for key in {m.event_key for m in items if m.kind == "end"} & opened.keys():
            del opened[key]  # its end is waiting to be sent: it is not open
            self._needs_settle = True
        self.corrupt += corrupt
        self.set_aside_count = max(self.set_aside_count, set_aside or 0)
        self.lost += (lost or 0) + lost_before
        self._lost_unrecorded += lost_before
        self.last_alive = alive or 0.0
        self._gone.extend(sorted(gone))
        left_open = {k: (open_row(json.loads(p)), p) for k, p in opened.items()}
        self._open = {**left_open, **self._open}
        if late:
            self._items.extendleft(reversed(items))
        else:
            self._items.extend(items)
            self.open_events = {k: json.loads(p) for k, (_label, p) in left_open.items()}
        self.recovered += len(items)
        while len(self._items) > self.max_items:
            self._drop(self._items.popleft())
        self._loaded = True
        self._report_load(len(items), corrupt, lost_before)

    def _report_load(self, recovered: int, corrupt: int, lost_before: int) -> None:
        if corrupt:
            log.error("spool %s: %d unreadable record(s) skipped", self.path, corrupt)
        if lost_before:
            log.error("spool %s: %d event(s) were lost: a previous run ended while the spool could not be written "
                      "(%d lost in all)", self.path, lost_before, self.lost)
        if recovered:
            log.info("spool: %d event(s) from the previous run waiting for delivery", recovered)

    def _settle_at_start(self) -> None:
        """The corrections the load made, on disk before anything is sent; then the marker starts this run."""
        if self._needs_settle:
            try:
                self._settle()
            except (sqlite3.Error, OSError) as exc:
                self._enter_trouble(exc)
        if self._trouble:
            self._mark(durable=True)
        else:
            self._mark_clean()

    # -- the audio loop's side -----------------------------------------------------------------------------------
    def append(self, msg: Message, event: dict | None = None) -> None:
        """Queue `msg`; with a spool it is on disk before this returns (or, while the disk cannot take it, counted
        as in memory only). `event` (the payload as a dict) keeps the open events in the same transaction."""
        with self._lock:
            self.appended += 1
            if len(self._items) >= self.max_items:
                if self.policy == "drop_newest":
                    self.dropped += 1
                    return
                victim = next((m for m in self._items if m is not self._busy_head), None)
                if victim is not None:
                    self._items.remove(victim)
                    self._drop(victim)
            if event is not None:
                msg.kind, msg.label, msg.event_key = str(event.get("type", "")), open_row(event), \
                    event_key(event)
                if msg.kind == "start":
                    self._open[msg.event_key] = (msg.label, msg.payload)
            self._items.append(msg)
            if self._disk is None:  # memory only (or not opened yet)
                return
            if not self._trouble:
                try:
                    msg.seq = self._disk.write_event(msg.topic, msg.payload, event)
                except (sqlite3.Error, OSError) as exc:
                    self._enter_trouble(exc)
                else:
                    if msg.kind == "end":
                        self._open.pop(msg.event_key, None)
                    self._committed()
                    if self._disk.vanished():
                        self._lose_file()
                    return
            self.unwritten += 1
            self._mark(durable=True)  # this event's one fsync: the count a crash now would leave

    def mark_alive(self) -> None:
        """Record that the process was running now (ends of cut-short events are dated from it)."""
        with self._lock:
            if self._disk is None or not self._loaded:
                return
            if self._trouble:
                self._mark(durable=False)
                return
            try:
                self._disk.mark_alive()
                self._committed()
            except (sqlite3.Error, OSError) as exc:
                self._enter_trouble(exc)
                self._mark(durable=False)

    # -- the network thread's side -------------------------------------------------------------------------------
    def head(self) -> Message | None:
        with self._lock:
            self._busy_head = self._items[0] if self._items else None
            return self._busy_head

    def remove_head(self, msg: Message) -> bool:
        """The broker acknowledged `msg`: remove it (it is the head unless it was dropped meanwhile)."""
        with self._lock:
            if self._busy_head is msg:
                self._busy_head = None
            if not self._items or self._items[0] is not msg:
                return False
            self._items.popleft()
            self._forget(msg)
            if not self._items:
                self._emptied = True
                self.poke_keeper()  # a good moment for a checkpoint
            return True

    def set_aside(self, msg: Message, reason: str) -> None:
        """`msg` (the head, possibly in flight) will never be taken by the broker: take it out of the queue and the
        spool for good, keep it in the spool's dead_letter table with `reason`, and count it (set_aside_count, kept
        across restarts). A message no longer queued (dropped meanwhile) is left as it is."""
        with self._lock:
            if self._busy_head is msg:
                self._busy_head = None
            index = next((i for i, m in enumerate(self._items) if m is msg), None)
            if index is None:
                return
            del self._items[index]
            self.set_aside_count += 1
            self._forget(msg, (msg.topic, msg.payload, reason, time.time()), delivered=False)

    def _drop(self, msg: Message) -> None:
        self.dropped += 1
        self._forget(msg, delivered=False)

    def _forget(self, msg: Message, dead: tuple | None = None, delivered: bool = True) -> None:
        """`msg` left the queue (delivered, dropped, or set aside as `dead`): the spool forgets it too."""
        if msg.kind == "end" or dead or not delivered:
            self._open.pop(msg.event_key, None)  # ended, or never heard: nothing to end at the next start
        if self._disk is None:
            return
        if not msg.seq:
            self.unwritten -= 1
            self._needs_settle = self._needs_settle or msg.kind == "end"
        if not self._trouble and (msg.seq or dead):
            try:
                if dead:
                    self._disk.set_aside(msg.seq, dead, self.set_aside_count)
                else:
                    self._disk.delete(msg.seq)
                self._committed()
                return
            except (sqlite3.Error, OSError) as exc:
                self._enter_trouble(exc)
        if self._trouble:
            if msg.seq:
                self._gone.append(msg.seq)
            if dead:
                self._dead = [*self._dead[-DEAD_LETTERS_KEPT + 1:], dead]
            self._mark(durable=False)

    def close(self) -> None:
        """Stop the keeper, write what can be written; what cannot is lost, and counted beside the spool."""
        self.stop_keeper()
        if self._trouble:
            self.recover()
        with self._lock:
            if self.unwritten and self._disk is not None:
                self.lost += self.unwritten
                self._lost_unrecorded += self.unwritten
                if not self._told_at_shutdown:
                    log.error("spool %s: %d event(s) kept in memory only are lost (%s)", self.path, self.unwritten,
                              self._trouble)
                self.unwritten = 0
                self._mark(durable=True)  # the next start counts them
            if self._disk is not None:
                self._disk.close()
            if self._marker is not None:
                self._marker.close()

    def shutdown_note(self) -> str:
        """Where the events still queued at shutdown are, in words: in the spool for the next start, or lost (after
        one more try to write what is in memory only)."""
        if self._disk is None:
            return "lost (mqtt.spool_file = 'none' keeps them in memory only)" if not self.path else \
                "lost (the spool was never opened)"
        if self._trouble:
            self.stop_keeper()
            self.recover()
        with self._lock:
            self._told_at_shutdown = True
            kept = len(self._items) - self.unwritten
            where = f"kept in the spool {self.path} for the next start"
            if not self.unwritten:
                return where
            counted = "the next start counts them" if self.marker_kept() else "the next start cannot count them"
            return (f"{kept} {where}; " if kept else "") + \
                f"{self.unwritten} lost: the spool cannot be written ({self._trouble}); {counted}"


def _message(seq: int, topic: str, payload: str) -> Message:
    record = event_record(payload)
    if record is None:  # the spool loads events and clips' references only (spool_disk.py)
        return Message(topic, payload, qos=1, seq=seq, kind=CLIP_KIND)
    return Message(topic, payload, qos=1, seq=seq, kind=record["type"], label=open_row(record),
                   event_key=event_key(record))
