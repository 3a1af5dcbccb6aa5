"""The recorder's store: events (a start joined with its end), clips, device status and metrics history, on SQLite
(one file, WAL) or PostgreSQL (psycopg 3), through one schema (schema.py) and parameterised statements only.

Idempotent on the events' documented (event_id, type) key: the messages table holds every key stored, and a copy
delivered again, or replayed, changes nothing. One connection per store behind a lock: any thread may call it.
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from contextlib import contextmanager

from ...core.errors import InputError
from ...core.files import MIB

from . import schema

DAY = 86400.0
BUCKETS = {"hour": 3600, "day": 86400}
STALE_FLOOR_S = 120.0  # a device is stale after max(this, 3 metrics intervals) without metrics
PROBLEM_FIELDS = ("failed", "mqtt_error", "spool_problem", "clips_problem", "problem")
EVENT_FIELDS = ("event_id", "device_id", "source", "label", "start_ts", "end_ts", "duration_s", "peak_score",
                "mean_score", "level_dbfs", "cut_short", "clip_status", "has_clip")
_SELECT_EVENTS = ("SELECT e.event_id, e.device_id, e.source, e.label, e.start_ts, e.end_ts, e.duration_s,"
                  " e.peak_score, e.mean_score, e.level_dbfs, e.cut_short, e.clip_status, c.event_id{extra}"
                  " FROM events e LEFT JOIN clips c ON c.event_id = e.event_id")
def open_store(url: str) -> "Store":
    """The store at `url` ("sqlite:///abs/path.db" or "postgresql://user:pass@host:port/db"), migrated to the
    newest schema. InputError with one line (the URL's password redacted) when it cannot be opened."""
    shown = schema.redact(url)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        store = Store(schema.connect_sqlite(url, shown), "sqlite", shown)
    elif scheme in ("postgresql", "postgres"):
        store = Store(schema.connect_postgres(url, shown), "postgresql", shown, reconnect=url)
    else:
        raise InputError(f"database {shown!r}: not a sqlite:///PATH or postgresql://USER@HOST:PORT/DB URL")
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


class Store:
    """Made by open_store(). Every method takes the store's lock: one statement or transaction at a time."""

    def __init__(self, conn, kind: str, url: str, reconnect: str | None = None):
        self._conn, self.kind, self.url = conn, kind, url
        self._reconnect = reconnect  # PostgreSQL: the real URL, to connect again after the server went away
        self._lock = threading.RLock()
        self._known: set[tuple[str, str]] = set()  # (device, source) pairs already in the sources table
        self.schema_version = 0

    # -- the engine: one connection, parameterised statements, transactions --------------------------------

    def _sql(self, query: str) -> str:
        """`query` for this engine: psycopg takes %s where sqlite3 takes ?."""
        return query.replace("?", "%s") if self.kind == "postgresql" else query

    def _x(self, query: str, params: tuple | list = ()):
        return self._conn.execute(self._sql(query), tuple(params) or None) if self.kind == "postgresql" \
            else self._conn.execute(query, tuple(params))

    def _alive(self) -> None:
        if self.kind == "postgresql" and (self._conn.closed or self._conn.broken):
            self._conn = schema.connect_postgres(self._reconnect, self.url)

    @contextmanager
    def _tx(self):
        """One transaction under the lock: committed when the block ends, rolled back when it raises."""
        with self._lock:
            self._alive()
            if self.kind == "postgresql":
                with self._conn.transaction():
                    yield
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _rows(self, query: str, params: tuple | list = ()) -> list[tuple]:
        with self._lock:
            self._alive()
            return self._x(query, params).fetchall()

    def migrate(self) -> None:
        """Apply the migrations this database has not had (open_store does)."""
        with self._tx():
            if self.kind == "postgresql":
                self._x(f"SELECT pg_advisory_xact_lock({schema.ADVISORY_LOCK})")
            self._x(schema.VERSION_TABLE)
            have = self._x("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            if have > schema.LATEST:
                raise InputError(f"database {self.url}: schema version {have} is newer than this release's "
                                 f"{schema.LATEST}; upgrade edge-audio")
            for version, statements in schema.MIGRATIONS:
                if version > have:
                    for statement in statements:
                        self._x(statement)
                    self._x("INSERT INTO schema_version (version, applied_ts) VALUES (?, ?)", (version, time.time()))
        self.schema_version = max(have, schema.LATEST)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- writing ------------------------------------------------------------------------------------------------

    def _seen(self, device_id: str, source: str, ts: float) -> tuple[str, str] | None:
        """Within a transaction: note the pair in sources; the pair to remember once committed (None: known)."""
        pair = (device_id, source)
        if pair in self._known:
            return None
        self._x("INSERT INTO sources (device_id, source, first_ts) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (device_id, source, ts))
        return pair

    def _remember(self, pair: tuple[str, str] | None) -> None:
        if pair is not None:
            self._known.add(pair)

    def add_event(self, payload: dict, received_ts: float) -> bool:
        """Store one event message (a validated edge.core.events payload): True when new, False for a copy of one
        stored already. ValueError for text no engine keeps as it is (a NUL, a lone surrogate)."""
        kind, event_id = payload["type"], payload["event_id"]
        device, source, label = payload.get("device_id", ""), payload.get("source", ""), payload["label"]
        schema.check_text(event_id, kind, device, source, label)
        text = json.dumps(payload, sort_keys=True)
        scores = (payload["duration_s"], payload["peak_score"], payload["mean_score"], payload["level_dbfs"])
        with self._tx():
            new = self._x("INSERT INTO messages (event_id, type, received_ts) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                          (event_id, kind, received_ts)).rowcount == 1
            if not new:
                return False
            if kind == "start":
                self._x(schema.START_UPSERT, (event_id, device, source, label, payload["start_ts"], *scores, text,
                                        received_ts))
            else:
                clip = payload.get("clip")
                status = clip.get("status") if isinstance(clip, dict) else None
                self._x(schema.END_UPSERT, (event_id, device, source, label, payload["start_ts"], payload.get("end_ts"),
                                      *scores, int(bool(payload.get("cut_short"))),
                                      str(status) if status is not None else None, text, received_ts))
            pair = self._seen(device, source, received_ts)
        self._remember(pair)
        return True

    def add_clip(self, event_id: str, device_id: str, path: str, nbytes: int, sha256: str,
                 received_ts: float) -> bool:
        """The clip file the recorder wrote for an event: True when new (one clip per event)."""
        schema.check_text(event_id, device_id, path, sha256)
        with self._tx():
            return self._x("INSERT INTO clips (event_id, device_id, path, bytes, sha256, received_ts)"
                           " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                           (event_id, device_id, str(path), int(nbytes), sha256, received_ts)).rowcount == 1

    def set_status(self, device_id: str, source: str, online: bool, ts: float) -> None:
        """Online or offline as of `ts` (since_ts moves only when it changes; an older message changes nothing)."""
        schema.check_text(device_id, source)
        with self._tx():
            self._x(schema.STATUS_UPSERT, (device_id, source, int(bool(online)), ts, ts))
            pair = self._seen(device_id, source, ts)
        self._remember(pair)

    def add_metrics(self, device_id: str, source: str, payload: dict, ts: float) -> None:
        """A metrics message: a history row (one per device, source and ts) and the latest for the fleet."""
        schema.check_text(device_id, source)
        text = json.dumps(payload, sort_keys=True)
        with self._tx():
            self._x("INSERT INTO metrics (device_id, source, ts, payload) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (device_id, source, ts, text))
            self._x(schema.LATEST_UPSERT, (device_id, source, ts, text))
            pair = self._seen(device_id, source, ts)
        self._remember(pair)

    # -- reading ------------------------------------------------------------------------------------------------

    def devices(self, now: float) -> list[dict]:
        """One row per (device, source) seen: its status, its latest metrics' health figures (a source's falling back
        on its device's for those only the device reports), events since UTC midnight (the device's row: all its
        sources'), and whether it is stale or degraded, and why."""
        rows = self._rows("SELECT s.device_id, s.source, st.online, st.since_ts, m.ts, m.prev_ts, m.payload"
                          " FROM sources s LEFT JOIN status st ON st.device_id = s.device_id AND st.source = s.source"
                          " LEFT JOIN metrics_latest m ON m.device_id = s.device_id AND m.source = s.source"
                          " ORDER BY s.device_id, s.source")
        today = self._rows("SELECT device_id, source, COUNT(*) FROM events WHERE start_ts >= ?"
                           " GROUP BY device_id, source", ((now // DAY) * DAY,))
        return fleet_rows(rows, today, now)

    @staticmethod
    def _where(device_id=None, source=None, label=None, since=None, until=None) -> tuple[list[str], list]:
        clauses, params = [], []
        for column, value in (("device_id", device_id), ("source", source), ("label", label)):
            if value is not None:
                clauses.append(f"e.{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("e.start_ts >= ?")
            params.append(float(since))
        if until is not None:
            clauses.append("e.start_ts < ?")
            params.append(float(until))
        return clauses, params

    def _page(self, filters: dict, limit: int, offset: int = 0, after: tuple | None = None) -> list[dict]:
        clauses, params = self._where(**filters)
        if after is not None:  # keyset: the page after (start_ts, event_id), newest first
            clauses.append("(e.start_ts < ? OR (e.start_ts = ? AND e.event_id < ?))")
            params += [after[0], after[0], after[1]]
        query = _SELECT_EVENTS.format(extra="") + (" WHERE " + " AND ".join(clauses) if clauses else "")
        query += " ORDER BY e.start_ts DESC, e.event_id DESC LIMIT ? OFFSET ?"
        return [_event_row(r) for r in self._rows(query, [*params, int(limit), int(offset)])]

    def events(self, device_id=None, source=None, label=None, since=None, until=None, limit=100,
               offset=0) -> list[dict]:
        """Events newest first (by start), filtered; since <= start_ts < until."""
        filters = dict(device_id=device_id, source=source, label=label, since=since, until=until)
        return self._page(filters, limit, offset)

    def event(self, event_id: str) -> dict | None:
        """One event as events() gives it, plus its "start" and "end" payloads (None for one not stored)."""
        rows = self._rows(_SELECT_EVENTS.format(extra=", e.start_payload, e.end_payload") + " WHERE e.event_id = ?",
                          (event_id,))
        if not rows:
            return None
        out = _event_row(rows[0][:13])
        out["start"], out["end"] = (json.loads(p) if p else None for p in rows[0][13:])
        return out

    def clip(self, event_id: str) -> dict | None:
        rows = self._rows("SELECT path, bytes, sha256 FROM clips WHERE event_id = ?", (event_id,))
        return dict(zip(("path", "bytes", "sha256"), rows[0])) if rows else None

    def counts(self, bucket: str, since: float, label=None, device_id=None) -> list[dict]:
        """Events per UTC hour or day and label, from `since`: [{"bucket_ts", "label", "count"}] oldest first."""
        if bucket not in BUCKETS:
            raise InputError(f"count bucket {bucket!r}: not hour or day")
        size = BUCKETS[bucket]
        expr = f"floor(e.start_ts / {size}) * {size}" if self.kind == "postgresql" \
            else f"CAST(e.start_ts / {size} AS INTEGER) * {size}"
        clauses, params = self._where(device_id=device_id, label=label, since=since)
        rows = self._rows(f"SELECT {expr} AS bucket, e.label, COUNT(*) FROM events e WHERE {' AND '.join(clauses)}"
                          " GROUP BY bucket, e.label ORDER BY bucket, e.label", params)
        return [{"bucket_ts": float(b), "label": lab, "count": int(n)} for b, lab, n in rows]

    def latest(self, device_id: str) -> dict:
        """{source: its latest metrics payload} of one device ("" for the device's own)."""
        rows = self._rows("SELECT source, payload FROM metrics_latest WHERE device_id = ?", (device_id,))
        return {source: json.loads(payload) for source, payload in rows}

    def labels(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT label FROM events ORDER BY label")]

    def device_ids(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT device_id FROM sources ORDER BY device_id")]

    def totals(self) -> dict:
        """Rows per table."""
        return {t: self._rows(f"SELECT COUNT(*) FROM {t}")[0][0]
                for t in ("events", "clips", "metrics", "status", "messages", "sources")}

    # -- housekeeping -------------------------------------------------------------------------------------------

    def retention(self, max_age_days: float, max_clip_mb: float) -> dict:
        """Delete events, their messages and clips, and metrics history older than max_age_days (0: keep all), then
        the oldest clips (rows and files) while they take more than max_clip_mb MiB (0: no limit). Status and the
        latest metrics stay. What went, counted."""
        gone = {"events": 0, "metrics": 0, "clips": 0, "clip_bytes": 0}
        if max_age_days and max_age_days > 0:
            cutoff = time.time() - max_age_days * DAY
            old = "SELECT event_id FROM events WHERE start_ts < ?"
            self._drop_clips(f"SELECT event_id, path, bytes FROM clips WHERE event_id IN ({old}) OR received_ts < ?",
                             (cutoff, cutoff), gone)
            with self._tx():
                self._x(f"DELETE FROM messages WHERE event_id IN ({old})", (cutoff,))
                gone["events"] = self._x("DELETE FROM events WHERE start_ts < ?", (cutoff,)).rowcount
                gone["metrics"] = self._x("DELETE FROM metrics WHERE ts < ?", (cutoff,)).rowcount
        if max_clip_mb and max_clip_mb > 0:
            limit = int(max_clip_mb * MIB)
            while (total := self._rows("SELECT COALESCE(SUM(bytes), 0) FROM clips")[0][0]) > limit:
                before = gone["clips"]
                self._drop_clips("SELECT event_id, path, bytes FROM clips ORDER BY received_ts, event_id LIMIT 200",
                                 (), gone, over=total - limit)
                if gone["clips"] == before:
                    break
        return gone

    def _drop_clips(self, query: str, params: tuple, gone: dict, over: int | None = None) -> None:
        """Delete the clips `query` selects (only as many, oldest first, as make `over` bytes when given): their
        rows, then their files."""
        victims, freed = [], 0
        for event_id, path, nbytes in self._rows(query, params):
            if over is not None and freed >= over:
                break
            victims.append((event_id, path))
            freed += nbytes
        with self._tx():
            for event_id, _ in victims:
                self._x("DELETE FROM clips WHERE event_id = ?", (event_id,))
        for _, path in victims:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        gone["clips"] += len(victims)
        gone["clip_bytes"] += freed

    def export(self, fmt: str, out, **filters) -> int:
        """events() matching `filters` (device_id, source, label, since, until), all of them, newest first, to the
        text stream `out` as "csv" (a header line, then one row each) or "jsonl" (one JSON object a line)."""
        if fmt not in ("csv", "jsonl"):
            raise InputError(f"export format {fmt!r}: not csv or jsonl")
        self._where(**filters)  # a TypeError for an unknown filter before anything is written
        writer = csv.writer(out) if fmt == "csv" else None
        if writer:
            writer.writerow(EVENT_FIELDS)
        written, after = 0, None
        while page := self._page(filters, 1000, after=after):
            for row in page:
                if writer:
                    writer.writerow(["" if row[k] is None else row[k] for k in EVENT_FIELDS])
                else:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += len(page)
            after = (page[-1]["start_ts"], page[-1]["event_id"])
        return written


def _event_row(r: tuple) -> dict:
    out = dict(zip(EVENT_FIELDS, r))
    out["cut_short"] = bool(out["cut_short"])
    out["has_clip"] = out["has_clip"] is not None
    return out


def fleet_rows(rows: list[tuple], today: list[tuple], now: float) -> list[dict]:
    """devices()' rows from (device, source, online, since, metrics ts, previous ts, payload) and today's counts."""
    counts: dict[tuple[str, str], int] = {}
    for device, source, n in today:
        counts[(device, source)] = counts.get((device, source), 0) + n
        if source:
            counts[(device, "")] = counts.get((device, ""), 0) + n
    own = {(r[0], r[1]): r for r in rows}
    out = []
    for device, source, online, since, ts, prev_ts, payload in rows:
        metrics = json.loads(payload) if payload else {}
        dev = own.get((device, ""))
        dev_metrics = json.loads(dev[6]) if source and dev and dev[6] else {}
        if source and dev and dev[2] == 0:  # the device is gone (its last will): so are its sources
            online, since = 0, dev[3]
        pick = {k: metrics[k] if metrics.get(k) is not None else dev_metrics.get(k)
                for k in ("delegate", "delegate_reason", "queue_depth", "clips_bytes")}
        problem = health_problem(metrics)
        out.append({"device_id": device, "source": source, "online": None if online is None else bool(online),
                    "since_ts": since, **pick,
                    "real_time_factor": metrics.get("real_time_factor"),
                    "events_today": counts.get((device, source), 0), "last_metrics_ts": ts,
                    "stale": ts is None or now - ts > stale_after(metrics, ts, prev_ts),
                    "degraded": bool(problem), "problem": problem})
    return out


def stale_after(metrics: dict, ts: float, prev_ts: float | None) -> float:
    """Seconds without metrics that make a device stale: 3 of its intervals (the payload's interval_s, else the
    time between its last two messages), never under STALE_FLOOR_S."""
    interval = metrics.get("interval_s")
    if not isinstance(interval, (int, float)) and prev_ts is not None:
        interval = ts - prev_ts
    return max(STALE_FLOOR_S, 3.0 * interval) if isinstance(interval, (int, float)) else STALE_FLOOR_S


def health_problem(metrics: dict) -> str:
    """What is wrong by this metrics payload ("" when nothing): any non-empty problem field, and a delegate that
    fell back to the CPU when an Edge TPU was wanted."""
    found = [f"{k}: {metrics[k]}" for k in PROBLEM_FIELDS if isinstance(metrics.get(k), str) and metrics[k]]
    reason = metrics.get("delegate_reason") or ""
    if metrics.get("delegate") == "cpu" and "CPU twin" in str(reason):
        found.append(f"delegate cpu: {reason}")
    return "; ".join(found)
