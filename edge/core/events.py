"""Detection events: small typed values with a schema version and a JSON form (the MQTT payload contract).

Within a schema version fields are only ever added, never renamed or removed. A message is identified by
(event_id, type): a start and its end share event_id; a copy delivered twice (at least once delivery, or a replay
from the spool after a restart) carries the same pair, so consumers deduplicate on it.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from datetime import datetime, timezone

SCHEMA_VERSION = 1


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    type: str  # "start" or "end"
    event_id: str  # the same for an event's start and end
    label: str
    class_index: int
    start_ts: float  # unix seconds
    end_ts: float | None  # None on "start"
    peak_score: float
    mean_score: float
    duration_s: float
    level_dbfs: float  # the loudest window of the event
    device_id: str = ""
    model: str = ""
    delegate: str = ""
    cut_short: bool = False  # an end written at the next start for an event the previous run left open
    source: str = ""  # the source that heard it ([[sources]] id; '' for a config with [audio] alone)
    # on an end, with [clips] on: what became of its clip (status, and for a kept one its file, seconds, bytes,
    # sha256, format, offset_s of the event's start within it); absent from the payload otherwise
    clip: dict | None = None

    @property
    def message_id(self) -> str:
        """The key a consumer deduplicates on: unique per message, the same for every copy of it."""
        return f"{self.event_id}:{self.type}"

    def to_dict(self) -> dict:
        d = {name: getattr(self, name) for name in _FIELDS}  # scalars, and clip's flat dict: no deep copy (asdict)
        if d["clip"] is None:
            del d["clip"]
        d["schema"] = SCHEMA_VERSION
        d["start_time"] = iso(self.start_ts)
        d["end_time"] = iso(self.end_ts) if self.end_ts is not None else None
        for k in ("peak_score", "mean_score", "duration_s", "level_dbfs"):
            d[k] = round(d[k], 4)
        return d

    def to_json(self, as_dict: dict | None = None) -> str:
        """The payload: to_dict() as JSON (pass `as_dict` when the caller made it already)."""
        return json.dumps(self.to_dict() if as_dict is None else as_dict, sort_keys=True)

    @classmethod
    def from_dict(cls, payload: dict) -> "Event":
        """The Event whose to_dict() is `payload` (schema, start_time, end_time and keys a later release of this
        schema added are read past; a field with a default may be missing). ValueError naming the field for
        anything else."""
        if not isinstance(payload, dict):
            raise ValueError(f"an event is a JSON object, not {type(payload).__name__}")
        if payload.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"event schema {payload['schema']!r:.20} is not {SCHEMA_VERSION}")
        values = {}
        for f in fields(cls):
            if f.name in payload:
                values[f.name] = _typed(f.name, payload[f.name], f.type)
            elif f.default is MISSING:
                raise ValueError(f"event without {f.name}")
        if values["type"] not in ("start", "end"):
            raise ValueError(f"event type {values['type']!r:.40}: not start or end")
        return cls(**values)


def _typed(name: str, value, annotation: str):
    """`value` as the field's annotation wants it: a JSON integer where a float is wanted becomes one; a bool is
    not a number; None only where the annotation allows it."""
    if value is None and annotation.endswith("| None"):
        return None
    kind, what = _KINDS[annotation.removesuffix(" | None")]
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise ValueError(f"event {name} {value!r:.40}: not {what}")


_KINDS = {"str": (str, "a string"), "int": (int, "an integer"), "float": (float, "a number"),
          "bool": (bool, "true or false"), "dict": (dict, "an object")}


_FIELDS = tuple(f.name for f in fields(Event))
