"""The recorder's database: how to reach it (connect(): SQLite or PostgreSQL, one-line errors) and its schema, one set of statements that runs on SQLite and on PostgreSQL, applied as numbered
migrations. A database records each migration it has had in schema_version; opening it applies only the newer
ones, each in one transaction (on PostgreSQL under an advisory lock, so two recorders opening one fresh database
at once do not both create it).

The types are those both engines know: TEXT, BIGINT (SQLite's INTEGER affinity), DOUBLE PRECISION (SQLite's REAL
affinity; PostgreSQL's REAL would be 4 bytes, too few for a timestamp). Booleans are 0/1 integers; metrics and
event payloads are JSON text. Clips are files on disk; their rows name them.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from edge.core.errors import InputError

VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version ("
                 "version BIGINT PRIMARY KEY, applied_ts DOUBLE PRECISION NOT NULL)")

# (version, statements): append new ones, never edit one a database may have had
MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (1, (
        # every (event_id, type) message stored once: an at-least-once copy or a replay finds its key here
        "CREATE TABLE messages (event_id TEXT NOT NULL, type TEXT NOT NULL, received_ts DOUBLE PRECISION NOT NULL,"
        " PRIMARY KEY (event_id, type))",
        # one row per event: a start joined with its end (whichever came first made the row)
        "CREATE TABLE events (event_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, source TEXT NOT NULL,"
        " label TEXT NOT NULL, start_ts DOUBLE PRECISION NOT NULL, end_ts DOUBLE PRECISION,"
        " duration_s DOUBLE PRECISION, peak_score DOUBLE PRECISION, mean_score DOUBLE PRECISION,"
        " level_dbfs DOUBLE PRECISION, cut_short BIGINT NOT NULL DEFAULT 0, clip_status TEXT,"
        " start_payload TEXT, end_payload TEXT, received_ts DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX events_start ON events (start_ts)",
        "CREATE INDEX events_device ON events (device_id, start_ts)",
        "CREATE INDEX events_source ON events (source, start_ts)",
        "CREATE INDEX events_label ON events (label, start_ts)",
        "CREATE TABLE clips (event_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, path TEXT NOT NULL,"
        " bytes BIGINT NOT NULL, sha256 TEXT NOT NULL, received_ts DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX clips_received ON clips (received_ts)",
        # every (device, source) the recorder has heard of, whatever told it
        "CREATE TABLE sources (device_id TEXT NOT NULL, source TEXT NOT NULL, first_ts DOUBLE PRECISION NOT NULL,"
        " PRIMARY KEY (device_id, source))",
        "CREATE TABLE status (device_id TEXT NOT NULL, source TEXT NOT NULL, online BIGINT NOT NULL,"
        " since_ts DOUBLE PRECISION NOT NULL, ts DOUBLE PRECISION NOT NULL, PRIMARY KEY (device_id, source))",
        "CREATE TABLE metrics (device_id TEXT NOT NULL, source TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,"
        " payload TEXT NOT NULL, PRIMARY KEY (device_id, source, ts))",
        "CREATE INDEX metrics_ts ON metrics (ts)",
        # the newest metrics of each (device, source), and when the one before it came (the device's interval)
        "CREATE TABLE metrics_latest (device_id TEXT NOT NULL, source TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,"
        " prev_ts DOUBLE PRECISION, payload TEXT NOT NULL, PRIMARY KEY (device_id, source))",
    )),
]

# the writes that join a start with its end, keep status' since, and the latest metrics (store.py)
START_UPSERT = (
    "INSERT INTO events (event_id, device_id, source, label, start_ts, duration_s, peak_score, mean_score,"
    " level_dbfs, start_payload, received_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (event_id) DO UPDATE SET start_ts = excluded.start_ts, start_payload = excluded.start_payload")
END_UPSERT = (
    "INSERT INTO events (event_id, device_id, source, label, start_ts, end_ts, duration_s, peak_score,"
    " mean_score, level_dbfs, cut_short, clip_status, end_payload, received_ts)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (event_id) DO UPDATE SET end_ts = excluded.end_ts, duration_s = excluded.duration_s,"
    " peak_score = excluded.peak_score, mean_score = excluded.mean_score, level_dbfs = excluded.level_dbfs,"
    " cut_short = excluded.cut_short, clip_status = excluded.clip_status, end_payload = excluded.end_payload")
STATUS_UPSERT = (
    "INSERT INTO status (device_id, source, online, since_ts, ts) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (device_id, source) DO UPDATE SET since_ts = CASE WHEN status.online = excluded.online"
    " THEN status.since_ts ELSE excluded.since_ts END, online = excluded.online, ts = excluded.ts"
    " WHERE status.ts <= excluded.ts")
LATEST_UPSERT = (
    "INSERT INTO metrics_latest (device_id, source, ts, prev_ts, payload) VALUES (?, ?, ?, NULL, ?)"
    " ON CONFLICT (device_id, source) DO UPDATE SET prev_ts = metrics_latest.ts, ts = excluded.ts,"
    " payload = excluded.payload WHERE metrics_latest.ts < excluded.ts")

LATEST = MIGRATIONS[-1][0]
ADVISORY_LOCK = 0x65646765  # PostgreSQL: one migrating recorder at a time ("edge")


def redact(url: str) -> str:
    """`url` with its password, if any, as ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    except ValueError:
        return "(an unreadable database URL)"


def one_line(exc: BaseException, secret: str | None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.replace(secret, "***") if secret else text


def connect_sqlite(url: str, shown: str):
    import sqlite3
    path = Path(url.split(":", 1)[1].removeprefix("//"))
    if not str(path) or str(path) == ".":
        raise InputError(f"database {shown}: no file named (sqlite:///abs/path.db)")
    if path.is_dir():
        raise InputError(f"database {shown}: {path} is a folder, not an SQLite database file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
    except (sqlite3.Error, OSError) as exc:
        raise InputError(f"database {shown}: cannot open {path}: {one_line(exc, None)}") from None
    try:
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise InputError(f"database {shown}: {path} is not an SQLite database ({one_line(exc, None)})") from None
    return conn


def connect_postgres(url: str, shown: str):
    try:
        import psycopg
    except ImportError:
        raise InputError(f"database {shown}: PostgreSQL needs psycopg (pip install 'edge-audio[recorder]')") \
            from None
    try:
        secret = urlsplit(url).password
    except ValueError:
        secret = None
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except (psycopg.Error, ValueError) as exc:
        raise InputError(f"database {shown}: {one_line(exc, secret)}") from None


def check_text(*values: str) -> None:
    """Text both engines store as it is: no NUL (PostgreSQL refuses it), no lone surrogate (not UTF-8)."""
    for v in values:
        if "\x00" in v:
            raise ValueError(f"{v[:40]!r}: text with a NUL character")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{v[:40]!r}: not valid Unicode text") from None
