"""Detection events: small typed values with a schema version and a JSON form (the MQTT payload contract)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schema"] = SCHEMA_VERSION
        d["start_time"] = iso(self.start_ts)
        d["end_time"] = iso(self.end_ts) if self.end_ts is not None else None
        for k in ("peak_score", "mean_score", "duration_s", "level_dbfs"):
            d[k] = round(d[k], 4)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
