"""What a spool record must be to be sent again or acted on: a topic this device may publish to, and an event whose
JSON is strict (no NaN or Infinity), whose numbers are finite and whose times can be shown, or a clip's reference
(clipsend.py). Anything else is skipped and counted, never a reason not to start."""

from __future__ import annotations

import json
import math
import os
import re

from ..core.events import Event

MAX_TOPIC_BYTES = 65535  # MQTT's limit on a topic name
LATEST_TS = 253402300799.0  # 9999-12-31T23:59:59Z: the last time an event's ISO form can show
TIME_FIELDS = ("start_ts", "end_ts")
CLIP_KIND = "clip"  # Message.kind of a clip's reference
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def valid_topic(topic) -> bool:
    """A topic a message can be published to: no wildcard, no NUL, UTF-8, not empty, not too long. (One the broker
    refuses all the same, say of an earlier device id, is sent, and set aside after its tries: kept, not lost.)"""
    if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic or "\0" in topic:
        return False
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return size <= MAX_TOPIC_BYTES


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")


def event_record(payload) -> dict | None:
    """The event a spool record holds, or None: a JSON object with a label and a type (start or end), every number
    finite and its times between 1970 and 9999."""
    if not isinstance(payload, str):
        return None
    try:
        value = json.loads(payload, parse_constant=_not_json)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("label"), str) or \
            value.get("type") not in ("start", "end"):
        return None
    if any(isinstance(v, float) and not math.isfinite(v) for v in value.values()):
        return None  # 1e999 reads as infinity
    for name in TIME_FIELDS:
        ts = value.get(name)
        if ts is not None and not (isinstance(ts, (int, float)) and not isinstance(ts, bool) and
                                   0.0 <= ts <= LATEST_TS):
            return None
    return value


def clip_reference(payload) -> dict | None:
    """The clip a spool record names, or None: a JSON object of exactly "clip" (an absolute path), "bytes" (its
    size) and "sha256" (of its bytes)."""
    try:
        value = json.loads(payload, parse_constant=_not_json) if isinstance(payload, str) else None
    except ValueError:
        return None
    if not isinstance(value, dict) or set(value) != {"clip", "bytes", "sha256"}:
        return None
    path, size, digest = value["clip"], value["bytes"], value["sha256"]
    if not (isinstance(path, str) and os.path.isabs(path) and "\0" not in path):
        return None
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
        return None
    return value if isinstance(digest, str) and _SHA256.match(digest) else None


def open_record(payload) -> dict | None:
    """The start of an event left open, or None: an event record that is a start the daemon can end (it reads as
    an Event)."""
    value = event_record(payload)
    if value is None or value["type"] != "start" or not isinstance(value.get("start_ts"), (int, float)):
        return None
    try:
        Event.from_dict(value)
    except (TypeError, ValueError):
        return None
    return value


def sane_time(value) -> float | None:
    """A unix time read back from the spool's own bookkeeping, or None when it is not one."""
    try:
        ts = float(value)
    except (TypeError, ValueError):
        return None
    return ts if 0.0 <= ts <= LATEST_TS else None


def open_row(event: dict) -> str:
    """The spool's open_events row of an event: one per source and label (a source's next start of a label takes
    the place of one whose end never came; its end removes it). The label itself for source '' (a config with
    [audio] alone, and every spool written before sources existed); [source, label] as JSON for a named source, so
    a Cat heard by two sources at once is two open events."""
    label, source = str(event.get("label", "")), event.get("source")
    return json.dumps([source, label]) if isinstance(source, str) and source else label


def event_key(event: dict) -> str:
    """What identifies an event in the spool's bookkeeping: its event_id (older records: its label)."""
    event_id = event.get("event_id")
    return event_id if isinstance(event_id, str) and event_id else f"label:{event.get('label')}"
