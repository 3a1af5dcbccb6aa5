"""The event outbox: bounded, ordered, thread-safe, and kept in a crash-safe spool on disk.

The audio loop appends; the network thread sends the head and removes it once the broker acknowledged it. With a
spool file (SQLite in WAL mode, synchronous=FULL, from the standard library) an event is on disk, fsynced, before
append() returns, so a kill, a watchdog abort or a power cut loses nothing that was produced. Marking an event
delivered is not fsynced by itself (the next event's commit syncs it): a power cut may send it again, never lose it. The spool also keeps
which events are open (a start without its end yet), so the next start can end them, marked as cut short.

A spool that cannot be read never prevents a start: a corrupt record is skipped and counted; a file that is not
a database (or cannot be opened) is moved aside, reported, and a new one is started.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.paths import state_directory

log = logging.getLogger("edge.sinks")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS open_events (label TEXT PRIMARY KEY, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
                                        payload TEXT NOT NULL, reason TEXT NOT NULL, time REAL NOT NULL);
"""


def default_spool_path() -> Path:
    """spool.db in the state directory (edge/core/paths.py: $STATE_DIRECTORY, $EDGE_AUDIO_HOME,
    $XDG_STATE_HOME/edge-audio or ~/.local/state/edge-audio)."""
    return state_directory() / "spool.db"


def spool_path(setting: str) -> str | None:
    """The spool file for the mqtt.spool_file setting ('' = the default place, 'none' = memory only)."""
    if setting.strip().lower() == "none":
        return None
    return setting or str(default_spool_path())


@dataclass
class Message:
    topic: str
    payload: str
    qos: int = 0
    retain: bool = False
    seq: int = 0  # its row in the spool (0: memory only)


class Outbox:
    def __init__(self, max_items: int, policy: str = "drop_oldest", path: str | None = None):
        self.max_items = max_items
        self.policy = policy  # "drop_oldest" | "drop_newest"
        self.path = path  # None: memory only
        self.dropped = 0
        self.appended = 0
        self.recovered = 0  # events a previous run left undelivered
        self.corrupt = 0  # spool records that could not be read (skipped)
        self.set_aside_count = 0  # events the broker will never take, kept in dead_letter (this run and earlier)
        self.problem = ""  # what went wrong with the spool file, if anything
        self.open_events: dict[str, dict] = {}  # label -> start payload, as the previous run left them
        self.last_alive = 0.0  # unix time the previous run last wrote to the spool
        self._items: collections.deque[Message] = collections.deque()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._busy_head: Message | None = None  # in flight: never dropped to make room

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        with self._lock:
            return iter(list(self._items))

    # -- opening -------------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Open (or create) the spool and load what a previous run left. Never raises for a bad file."""
        if not self.path:
            return
        try:
            self._db = self._connect(self.path)
            self._load()
        except (sqlite3.DatabaseError, OSError) as exc:
            self._close_quietly()
            aside = self._move_aside(exc)
            try:
                self._db = self._connect(self.path)
            except (sqlite3.DatabaseError, OSError) as again:
                self.problem = f"spool {self.path} unusable ({again}); events are kept in memory only"
                log.error("%s", self.problem)
                self._db = None
                return
            self.problem = f"spool {self.path} was unreadable ({exc}); {aside}; started a new one"
            log.error("%s", self.problem)

    def check(self, warn) -> str:
        """Can the spool be used? Its folder is made and written to; an existing file is read, not loaded (the
        running service may hold it). What run would survive (memory only, a file moved aside) is a warning."""
        if not self.path:
            warn("mqtt.spool_file = 'none': events wait in memory only and a restart loses them")
            return "spool: memory only"
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            warn(f"spool {path}: cannot create its folder ({exc.strerror}): events would wait in memory only")
            return f"spool {path}: not usable"
        if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.R_OK | os.W_OK)):
            warn(f"spool {path}: not writable by this user: events would wait in memory only")
            return f"spool {path}: not writable"
        if not path.exists():
            return f"spool {path}: new"
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                waiting = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            warn(f"spool {path}: unreadable ({exc}): the daemon will move it aside and start a new one")
            return f"spool {path}: unreadable"
        return f"spool {path}: {waiting} event(s) waiting for delivery"

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        return db

    def _move_aside(self, exc: Exception) -> str:
        target = f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            os.replace(self.path, target)
        except OSError as err:
            return f"could not move it aside ({err.strerror})"
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, target + suffix)
        return f"moved to {target}"

    def _load(self) -> None:
        for seq, topic, payload in self._db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq"):
            if not isinstance(topic, str) or not _is_event(payload):
                self.corrupt += 1
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                continue
            self._items.append(Message(topic, payload, qos=1, seq=seq))
        self.recovered = len(self._items)
        for label, payload in self._db.execute("SELECT label, payload FROM open_events"):
            if _is_event(payload):
                self.open_events[label] = json.loads(payload)
            else:
                self.corrupt += 1
        self.last_alive = self._meta_number("last_alive", float)
        self.set_aside_count = self._meta_number("set_aside_count", int)
        while len(self._items) > self.max_items:
            self._drop(self._items.popleft())
        if self.corrupt:
            log.error("spool %s: %d unreadable record(s) skipped", self.path, self.corrupt)
        if self.recovered:
            log.info("spool: %d event(s) from the previous run waiting for delivery", self.recovered)

    def _meta_number(self, key: str, kind):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        try:
            return kind(row[0]) if row else kind(0)
        except (TypeError, ValueError):
            self.corrupt += 1
            return kind(0)

    # -- the audio loop's side -----------------------------------------------------------------------------------
    def append(self, msg: Message, event: dict | None = None) -> None:
        """Queue `msg`; with a spool it is on disk before this returns. `event` (the payload as a dict) keeps the
        table of open events in the same transaction."""
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
            if self._db is not None:
                msg.seq = self._write(msg, event)
            self._items.append(msg)

    def _write(self, msg: Message, event: dict | None) -> int:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute("INSERT INTO outbox (topic, payload) VALUES (?, ?)", (msg.topic, msg.payload))
            if event is not None and event.get("type") == "start":
                self._db.execute("INSERT OR REPLACE INTO open_events VALUES (?, ?)", (event["label"], msg.payload))
            elif event is not None:
                self._db.execute("DELETE FROM open_events WHERE label = ?", (event["label"],))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_alive', ?)", (repr(time.time()),))
            self._db.execute("COMMIT")
            return cur.lastrowid
        except sqlite3.Error as exc:
            self._rollback()
            self.problem = f"spool {self.path}: cannot write ({exc}); this event is kept in memory only"
            log.error("%s", self.problem)
            return 0

    def mark_alive(self) -> None:
        """Record that the process was running now (ends of cut-short events are dated from it)."""
        with self._lock:
            if self._db is not None:
                try:
                    self._lazy("INSERT OR REPLACE INTO meta VALUES ('last_alive', ?)", (repr(time.time()),))
                except sqlite3.Error:
                    pass

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
            self._delete(msg)
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
            if self._db is None:
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO dead_letter (topic, payload, reason, time) VALUES (?, ?, ?, ?)",
                                 (msg.topic, msg.payload, reason, time.time()))
                if msg.seq:
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", (msg.seq,))
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('set_aside_count', ?)",
                                 (str(self.set_aside_count),))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                log.error("spool %s: cannot set an event aside (%s)", self.path, exc)

    def _drop(self, msg: Message) -> None:
        self.dropped += 1
        self._delete(msg)

    def _delete(self, msg: Message) -> None:
        if self._db is not None and msg.seq:
            try:
                self._lazy("DELETE FROM outbox WHERE seq = ?", (msg.seq,))
            except sqlite3.Error as exc:
                log.error("spool %s: cannot mark an event delivered (%s)", self.path, exc)

    def _lazy(self, sql: str, params: tuple) -> None:
        """A commit that is not fsynced by itself (synchronous=NORMAL): a delivery or a heartbeat. The next
        event's commit (FULL) syncs the log it follows; a process crash loses neither (the log is written), a
        power cut may lose the last delivery marks, and those events are sent again: at least once, never lost."""
        db = self._db
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute(sql, params)
        finally:
            db.execute("PRAGMA synchronous=FULL")

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def _close_quietly(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None


def _is_event(payload) -> bool:
    """A spool record that is a JSON object with the fields every event has."""
    if not isinstance(payload, str):
        return False
    try:
        value = json.loads(payload)
    except ValueError:
        return False
    return isinstance(value, dict) and isinstance(value.get("label"), str) and value.get("type") in ("start", "end")
