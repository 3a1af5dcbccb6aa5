"""The spool's SQLite file: its schema and settings, what is read back at start, and every transaction the outbox
makes on it.

The file is SQLite in WAL mode with synchronous=FULL, in 1 KiB pages (a new file; an older one keeps its own). Its
write-ahead log is kept small: SQLite's own automatic checkpoint is off (it would run in the thread that commits:
the audio loop); the outbox's keeper thread checkpoints instead, on a connection of its own (PASSIVE: it never waits
for the writer, nor holds it up), after CHECKPOINT_COMMITS commits, when the queue empties and whenever the log is
over JOURNAL_LIMIT. The next transaction after a complete checkpoint starts the log over and cuts the file back to
JOURNAL_LIMIT (journal_size_limit). Only when the keeper cannot keep up (commits come faster than its checkpoints can
finish between them) and the log passes WRITER_CHECKPOINT_BYTES does the writer checkpoint itself, after a commit.
So the log stays under WAL_BOUND, 256 KiB: WRITER_CHECKPOINT_BYTES and the commits (about 7 KiB each) made while a
checkpoint of the keeper's is running (the writer's cannot run then; at the daemon's pace, none). The keeper writes
events kept in memory SYNC_CHUNK at a time (about 48 KiB) and checkpoints between them.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from .spool_records import clip_reference, event_key, event_record, open_record, open_row, sane_time, valid_topic

PAGE_BYTES = 1024  # a new spool's page size: an event is 300 to 500 bytes
JOURNAL_LIMIT = 32 * 1024  # bytes the write-ahead log is cut back to when it starts over
CHECKPOINT_COMMITS = 8  # commits between the keeper's checkpoints
WRITER_CHECKPOINT_BYTES = 96 * 1024  # a log this long: the keeper fell behind, the writer checkpoints itself
WAL_BOUND = 256 * 1024  # the write-ahead log's size stays under this (see above)
DEAD_LETTERS_KEPT = 1000  # the newest dead letters kept; older ones go

TABLES = (
    ("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
     "payload TEXT NOT NULL)"),
    "CREATE TABLE IF NOT EXISTS open_events (label TEXT PRIMARY KEY, payload TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ("CREATE TABLE IF NOT EXISTS dead_letter (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
     "payload TEXT NOT NULL, reason TEXT NOT NULL, time REAL NOT NULL)"),
)
# what SQLite says when the disk, not the file, is the trouble: the file is kept and written again later
DISK_ERRORS = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN")


@dataclass
class Loaded:
    """What a spool held: its events in order, the events it had open, its counters, the rows found unreadable."""
    rows: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, topic, payload)
    open: dict[str, str] = field(default_factory=dict)  # event key -> start payload
    meta: dict[str, str] = field(default_factory=dict)
    bad_rows: list[int] = field(default_factory=list)  # outbox seqs
    corrupt: int = 0


def is_disk_error(exc: BaseException) -> bool:
    """The disk is full, read-only, failing or gone: not a damaged file (which is moved aside)."""
    if isinstance(exc, OSError):
        return True
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(DISK_ERRORS) or "disk is full" in str(exc) or "readonly" in str(exc)


def describe(path: str, exc: BaseException | None) -> str:
    """The cause in a few words: the file system full or read-only, the folder gone, or what SQLite said."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        return f"its folder {folder} is gone"
    try:
        st = os.statvfs(folder)
    except OSError as err:
        return err.strerror or str(err)
    if st.f_flag & os.ST_RDONLY:
        return "the file system is read-only"
    if st.f_bavail == 0 or (exc is not None and "full" in str(exc)):
        return f"the file system is full ({st.f_bavail * st.f_frsize} bytes free)"
    if exc is None:
        return "it cannot be written"
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__


class SpoolFile:
    """The connections to one spool file. Every method but checkpoint() is called under the outbox's lock."""

    def __init__(self, path: str):
        self.path = path
        self.db: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None  # the keeper thread's own
        self._identity: tuple[int, int] | None = None
        self.commits = 0  # since the last checkpoint

    # -- opening -------------------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open (making its folder and the file if need be). Raises sqlite3.Error or OSError."""
        self.close()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.text_factory = _text
        try:
            db.execute(f"PRAGMA page_size={PAGE_BYTES}")  # before anything is written: a new file only
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT}")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a file that is not a database fails here
            try:
                for table in TABLES:
                    db.execute(table)
            except sqlite3.Error as exc:  # a full or read-only disk: read what there is, make the tables later
                if not is_disk_error(exc):
                    raise
            st = os.stat(self.path)
        except BaseException:
            db.close()
            raise
        self.db, self._identity = db, (st.st_dev, st.st_ino)

    def vanished(self) -> bool:
        """The file at the path is not the one open (deleted, or replaced): what is written goes nowhere."""
        if self._identity is None:
            return False
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._identity

    def load(self) -> Loaded:
        """Everything the file holds, records checked (spool_records.py); nothing is written here."""
        out = Loaded()
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "outbox" in tables:
            for seq, topic, payload in self.db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq"):
                readable = event_record(payload) is not None or clip_reference(payload) is not None
                if valid_topic(topic) and readable:
                    out.rows.append((seq, topic, payload))
                else:
                    out.bad_rows.append(seq)
        if "open_events" in tables:
            for _label, payload in self.db.execute("SELECT label, payload FROM open_events"):
                start = open_record(payload)
                if start is None:
                    out.corrupt += 1
                else:
                    out.open[event_key(start)] = payload
        if "meta" in tables:
            out.meta = {str(k): str(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
        out.corrupt += len(out.bad_rows)
        return out

    # -- transactions (each raises sqlite3.Error after a rollback) ----------------------------------------------
    def write_event(self, topic: str, payload: str, event: dict | None) -> int:
        """One event, durable (synchronous=FULL) when this returns; its row number."""
        with self._transaction():
            seq = self._insert(topic, payload, event)
            self._set_meta({"last_alive": repr(time.time())})
        return seq

    def write_events(self, batch: list[tuple[str, str, dict | None]], meta: dict) -> list[int]:
        """Events kept in memory meanwhile, in order, in one transaction; their row numbers."""
        with self._transaction():
            seqs = [self._insert(topic, payload, event) for topic, payload, event in batch]
            self._set_meta(meta)
        return seqs

    def settle(self, gone: list[int], open_rows: dict[str, str], dead: list[tuple], meta: dict) -> None:
        """The bookkeeping the disk could not take: rows delivered (or dropped, or set aside) deleted, the open
        events as they are now (one per label), dead letters, counters."""
        with self._transaction():
            for table in TABLES:
                self.db.execute(table)
            self.db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in gone])
            self.db.execute("DELETE FROM open_events")
            self.db.executemany("INSERT OR IGNORE INTO open_events VALUES (?, ?)", list(open_rows.items()))
            self._dead_letters(dead)
            self._set_meta(meta)

    def set_aside(self, seq: int, dead: tuple, count: int) -> None:
        """One message out of the outbox and into dead_letter, committed without its own fsync (lazy())."""
        def work():
            self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._dead_letters([dead])
            self._set_meta({"set_aside_count": str(count)})
        self.lazy(work)

    def delete(self, seq: int) -> None:
        self.lazy(lambda: self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)))

    def mark_alive(self) -> None:
        self.lazy(lambda: self._set_meta({"last_alive": repr(time.time())}))

    def lazy(self, work) -> None:
        """A commit that is not fsynced by itself (synchronous=NORMAL): a delivery, a heartbeat, a dead letter. The
        next event's commit (FULL) syncs the log it follows; a process crash loses none of them (the log is
        written), a power cut may lose the last ones: an event sent again, at least once, never lost."""
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction():
                work()
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def _transaction(self):
        return _Transaction(self)

    def _insert(self, topic: str, payload: str, event: dict | None) -> int:
        seq = self.db.execute("INSERT INTO outbox (topic, payload) VALUES (?, ?)", (topic, payload)).lastrowid
        if event is not None and event.get("type") == "start":
            self.db.execute("INSERT OR REPLACE INTO open_events VALUES (?, ?)", (open_row(event), payload))
        elif event is not None:
            self.db.execute("DELETE FROM open_events WHERE label = ?", (open_row(event),))
        return seq

    def _dead_letters(self, dead: list[tuple]) -> None:
        if dead:
            self.db.executemany("INSERT INTO dead_letter (topic, payload, reason, time) VALUES (?, ?, ?, ?)", dead)
            self.db.execute("DELETE FROM dead_letter WHERE seq <= (SELECT max(seq) FROM dead_letter) - ?",
                            (DEAD_LETTERS_KEPT,))

    def _set_meta(self, values: dict) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    # -- the keeper thread's side --------------------------------------------------------------------------------
    def checkpoint(self, writer: bool = False) -> None:
        """Copy the log into the file (PASSIVE: the writer goes on meanwhile); the next commit starts the log over
        and cuts it back to JOURNAL_LIMIT. `writer`: on the writer's connection (under the outbox's lock), else on
        the keeper's own. Raises sqlite3.Error (a full disk: the file cannot grow)."""
        if writer:
            db = self.db
        else:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db = self._checkpointer
        self.commits = 0
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def wal_bytes(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def close(self) -> None:
        for db in (self._checkpointer, self.db):
            if db is not None:
                try:
                    db.close()
                except sqlite3.Error:
                    pass
        self.db = self._checkpointer = None
        self._identity = None


class _Transaction:
    def __init__(self, spool: SpoolFile):
        self.db = spool.db
        self.spool = spool

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            try:
                self.db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self.spool.commits += 1
        else:
            self._rollback()
        return False

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _text(data: bytes) -> str | None:
    """A text value as read back: None when it is not UTF-8 (a record that is skipped, not a spool that fails)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def move_aside(path: str) -> str:
    """A file that is not a spool, renamed (with its log) so a new one can start; what became of it, in words."""
    target = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
    try:
        os.replace(path, target)
    except OSError as err:
        return f"could not move it aside ({err.strerror})"
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    return f"moved to {target}"


def check(path_text: str, warn) -> str:
    """Can the spool be used? Its folder is made and written to; an existing file is read, not loaded (the running
    service may hold it). What run would survive (memory only, a file moved aside) is a warning."""
    path = Path(path_text)
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


def meta_number(meta: dict, key: str) -> int | None:
    """A non-negative integer counter from meta (0 when absent, None when unreadable)."""
    if key not in meta:
        return 0
    try:
        value = int(meta[key])
    except ValueError:
        return None
    return value if value >= 0 else None


def meta_time(meta: dict, key: str) -> float | None:
    return 0.0 if key not in meta else sane_time(meta[key])
