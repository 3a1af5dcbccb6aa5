"""The crash-safe spool under the MQTT outbox: durable, ordered, bounded, and never an obstacle to starting."""

from __future__ import annotations

import json
import sqlite3

import pytest

from edge.core.events import Event
from edge.sinks.outbox import Message, Outbox


def _event(i: int, kind: str = "start", label: str = "Dog") -> tuple[Message, dict]:
    """An event as the sink queues it: the message, and its payload as a dict."""
    start = 1000.0 + i
    event = Event(kind, f"id{i}", label, 74, start, start + 2.0 if kind == "end" else None, 0.9, 0.7,
                  2.0 if kind == "end" else 0.0, -20.0, "pi", "yamnet", "cpu")
    payload = event.to_dict()
    return Message("edge-audio/pi/events", event.to_json(payload), qos=1), payload


def _spool(path, max_items: int = 100, policy: str = "drop_oldest") -> Outbox:
    box = Outbox(max_items, policy, str(path))
    box.open()
    return box


def _ids(box: Outbox) -> list[str]:
    return [json.loads(m.payload)["event_id"] for m in box]


def test_an_appended_event_is_on_disk_before_append_returns(tmp_path):
    box = _spool(tmp_path / "spool.db")
    box.append(*_event(1))
    # another connection (a new process after a kill would be the same) sees it at once
    rows = sqlite3.connect(tmp_path / "spool.db").execute("SELECT payload FROM outbox").fetchall()
    assert [json.loads(r[0])["event_id"] for r in rows] == ["id1"]


def test_replay_after_a_restart_is_in_order_and_acknowledged_events_are_gone(tmp_path):
    box = _spool(tmp_path / "spool.db")
    for i in range(5):
        box.append(*_event(i))
    head = box.head()
    assert box.remove_head(head) and _ids(box) == ["id1", "id2", "id3", "id4"]
    again = _spool(tmp_path / "spool.db")  # no close(): as after SIGKILL
    assert _ids(again) == ["id1", "id2", "id3", "id4"] and again.recovered == 4 and again.corrupt == 0


def test_open_events_are_kept_until_their_end(tmp_path):
    box = _spool(tmp_path / "spool.db")
    box.append(*_event(1, "start", "Dog"))
    box.append(*_event(2, "start", "Cat"))
    box.append(*_event(1, "end", "Dog"))
    again = _spool(tmp_path / "spool.db")
    assert list(again.open_events) == ["id2"] and again.open_events["id2"]["label"] == "Cat"
    assert again.last_alive > 0


def test_a_label_open_on_two_sources_is_two_open_events(tmp_path):
    """Cat heard by sources a and b at once, and by the device's own source: b's end leaves a's and the other
    open (the spool's open rows are per source and label)."""
    def of(source, i, kind):
        msg, payload = _event(i, kind, "Cat")
        payload["source"] = source
        return Message(msg.topic, json.dumps(payload), qos=1), payload
    box = _spool(tmp_path / "spool.db")
    for source, i in (("a", 1), ("b", 2), ("", 3)):
        box.append(*of(source, i, "start"))
    box.append(*of("b", 2, "end"))
    again = _spool(tmp_path / "spool.db")
    assert {k: e["source"] for k, e in again.open_events.items()} == {"id1": "a", "id3": ""}


def test_a_full_spool_drops_the_oldest_but_never_the_event_in_flight(tmp_path):
    box = _spool(tmp_path / "spool.db", max_items=3)
    for i in range(3):
        box.append(*_event(i))
    in_flight = box.head()
    box.append(*_event(3))
    box.append(*_event(4))
    assert _ids(box) == ["id0", "id3", "id4"] and box.dropped == 2
    assert box.remove_head(in_flight)
    assert box.appended == 5 and box.appended == 1 + box.dropped + len(box)  # delivered + dropped + queued
    assert _ids(_spool(tmp_path / "spool.db", max_items=3)) == ["id3", "id4"]


def test_drop_newest_keeps_what_is_queued(tmp_path):
    box = _spool(tmp_path / "spool.db", max_items=2, policy="drop_newest")
    for i in range(4):
        box.append(*_event(i))
    assert _ids(box) == ["id0", "id1"] and box.dropped == 2


@pytest.mark.parametrize("damage", ["null", "garbage record", "truncated record", "not an object", "not UTF-8"])
def test_a_corrupt_record_is_skipped_counted_and_reported(tmp_path, damage, caplog):
    path = tmp_path / "spool.db"
    box = _spool(path)
    for i in range(3):
        box.append(*_event(i))
    bad = {"null": "null", "garbage record": "\x00\xff garbage", "truncated record": '{"type": "start", "lab',
           "not an object": "[1, 2]", "not UTF-8": b'{"type": "start", "label": "\xff"}'}[damage]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE outbox SET payload = CAST(? AS TEXT) WHERE payload LIKE '%id1%'", (bad,))
    again = _spool(path)
    assert _ids(again) == ["id0", "id2"] and again.corrupt == 1
    assert "1 unreadable record(s) skipped" in caplog.text


@pytest.mark.parametrize("damage", ["zero-length file", "garbage file", "a directory", "truncated database"])
def test_a_spool_file_that_cannot_be_read_never_prevents_a_start(tmp_path, damage, caplog):
    path = tmp_path / "spool.db"
    if damage == "zero-length file":
        path.write_bytes(b"")
    elif damage == "garbage file":
        path.write_bytes(b"this is not a database\n" * 100)
    elif damage == "a directory":
        path.mkdir()
        (path / "inside").write_text("x")
    else:
        box = _spool(path)
        for i in range(50):
            box.append(*_event(i))
        box.close()
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2] + b"\xde\xad" * 64)
    box = Outbox(100, "drop_oldest", str(path))
    box.open()  # never raises
    box.append(*_event(99))  # and works
    assert _ids(box)[-1] == "id99"
    if damage != "zero-length file":
        assert box.problem and "started a new one" in box.problem, box.problem
        assert list(tmp_path.glob("spool.db.corrupt-*")), "the unreadable file was not kept aside"
    assert "Traceback" not in caplog.text


def test_memory_only_without_a_path():
    box = Outbox(10, "drop_oldest", None)
    box.open()
    box.append(*_event(1))
    assert _ids(box) == ["id1"] and box.path is None


def test_delivery_marks_are_lazy_and_every_append_stays_fully_synced(tmp_path):
    """An acknowledged event's delete is committed without its own fsync (the next append's full sync covers it):
    the connection is back to synchronous=FULL for the next event, and a new process sees the delete at once."""
    box = _spool(tmp_path / "spool.db")
    for i in range(3):
        box.append(*_event(i))
    assert box.remove_head(box.head())
    box.mark_alive()
    full = 2  # SQLite's code for synchronous=FULL
    assert box._disk.db.execute("PRAGMA synchronous").fetchone()[0] == full
    other = sqlite3.connect(tmp_path / "spool.db")
    assert [json.loads(r[0])["event_id"] for r in other.execute("SELECT payload FROM outbox ORDER BY seq")] == \
        ["id1", "id2"]


def test_a_message_set_aside_leaves_the_queue_and_the_spool_for_good_and_is_counted_across_restarts(tmp_path):
    path = tmp_path / "spool.db"
    box = _spool(path)
    for i in range(3):
        box.append(*_event(i))
    poisoned = box.head()  # in flight
    box.set_aside(poisoned, "the broker refused it: Not authorized")
    assert _ids(box) == ["id1", "id2"] and box.set_aside_count == 1
    assert box.head() is not poisoned and json.loads(box.head().payload)["event_id"] == "id1"
    again = _spool(path)  # no close(): as after SIGKILL
    assert _ids(again) == ["id1", "id2"] and again.set_aside_count == 1
    again.set_aside(again.head(), "too large")
    third = _spool(path)
    assert _ids(third) == ["id2"] and third.set_aside_count == 2
    rows = sqlite3.connect(path).execute("SELECT topic, payload, reason, time FROM dead_letter ORDER BY seq").fetchall()
    topic = "edge-audio/pi/events"
    assert [(r[0], json.loads(r[1])["event_id"], r[2]) for r in rows] == \
        [(topic, "id0", "the broker refused it: Not authorized"), (topic, "id1", "too large")]
    assert all(r[3] > 0 for r in rows)


def test_setting_aside_a_message_no_longer_queued_changes_nothing(tmp_path):
    box = _spool(tmp_path / "spool.db", max_items=2)
    box.append(*_event(0))
    box.append(*_event(1))
    first = box.head()
    assert box.remove_head(first)
    box.set_aside(first, "late refusal")
    assert _ids(box) == ["id1"] and box.set_aside_count == 0


def test_set_aside_in_memory_only_is_counted():
    box = Outbox(10, "drop_oldest", None)
    box.open()
    box.append(*_event(1))
    box.set_aside(box.head(), "refused")
    assert len(box) == 0 and box.set_aside_count == 1


@pytest.mark.parametrize("damage", ["start_ts 1e308", "start_ts Infinity", "start_ts NaN", "start_ts -5",
                                    "peak_score 1e999", "no end_ts", "not a start"])
def test_an_open_event_that_cannot_be_ended_is_skipped_counted_and_removed_at_load(tmp_path, damage, caplog):
    path = tmp_path / "spool.db"
    box = _spool(path)
    box.append(*_event(1, "start", "Dog"))
    box.append(*_event(2, "start", "Cat"))
    field, value = damage.split(" ", 1) if damage.startswith(("start_ts", "peak")) else (None, None)
    with sqlite3.connect(path) as db:
        text = db.execute("SELECT payload FROM open_events WHERE label = 'Dog'").fetchone()[0]
        if field:
            text = text.replace(f'"{field}": {json.loads(text)[field]}', f'"{field}": {value}')
        elif damage == "no end_ts":
            text = json.dumps({k: v for k, v in json.loads(text).items() if k != "end_ts"})
        else:
            text = json.dumps({**json.loads(text), "type": "end"})
        db.execute("UPDATE open_events SET payload = ? WHERE label = 'Dog'", (text,))
    again = _spool(path)  # never raises
    assert list(again.open_events) == ["id2"] and again.corrupt == 1
    assert "1 unreadable record(s) skipped" in caplog.text
    third = _spool(path)  # removed from the spool: not counted again
    assert list(third.open_events) == ["id2"] and third.corrupt == 0


@pytest.mark.parametrize("topic", ["edge-audio/+/events", "edge-audio/pi/#", "", "edge-audio/pi/\0events",
                                   b"edge-audio/pi/\xffevents", "a" * 65536])
def test_a_spool_row_for_a_topic_no_one_can_publish_to_is_skipped_and_counted(tmp_path, topic):
    path = tmp_path / "spool.db"
    box = _spool(path)
    for i in range(3):
        box.append(*_event(i))
    with sqlite3.connect(path) as db:  # bytes: stored as text that is not UTF-8
        db.execute("UPDATE outbox SET topic = CAST(? AS TEXT) WHERE payload LIKE '%\"id1\"%'", (topic,))
    again = Outbox(100, "drop_oldest", str(path))
    again.open()
    assert _ids(again) == ["id0", "id2"] and again.corrupt == 1
    third = Outbox(100, "drop_oldest", str(path))
    third.open()  # the row was removed from the spool: not counted again
    assert _ids(third) == ["id0", "id2"] and third.corrupt == 0


def test_counters_that_cannot_be_read_are_counted_and_read_as_zero(tmp_path):
    path = tmp_path / "spool.db"
    box = _spool(path)
    box.append(*_event(1))
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('last_alive', '1e308')")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('set_aside_count', 'many')")
    again = _spool(path)
    assert again.last_alive == 0.0 and again.set_aside_count == 0 and again.corrupt == 2 and _ids(again) == ["id1"]
