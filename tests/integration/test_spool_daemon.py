"""The daemon (a real process, real audio) publishing to a real Mosquitto with its state directory in trouble: on a
small tmpfs that fills and frees, deleted while in use, or holding a spool with records no one can act on. Whatever
happens, every event produced reaches the subscriber or is counted in the next run's metrics (spool_lost_events),
nothing delivered comes again, no (event_id, type) comes twice with two payloads, and the write-ahead log stays
under its bound. A state directory deleted while in use is also tried with two sources (Layout "two": "a" a WAV
replay with a Cat still sounding, "b" stdin) on the one spool."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3

import pytest

from daemonparts import SILENCE, Layout, kitchen_config, segment
from edge.sinks.outbox import Outbox
from edge.sinks.spool_disk import WAL_BOUND
from spoolparts import WalWatch, event, fill, rows, small_fs
from tools.rig.daemon import DaemonProcess
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have, wait_until

pytestmark = [pytest.mark.skipif(not have("mosquitto"), reason="needs Debian's mosquitto (make test installs it)"),
              pytest.mark.slow]

EVENTS, METRICS = "edge-audio/kitchen/events", "edge-audio/kitchen/metrics"


def _daemon(tmp_path, port, coral_twin, spool, name="cfg", layout: Layout | None = None, wav=None) -> DaemonProcess:
    """The kitchen daemon on stdin (with `layout`: its sources, "a" replaying `wav`)."""
    if layout is None:
        cfg = kitchen_config(tmp_path / f"{name}.toml", coral_twin, port, {"source": "stdin"}, {"spool_file": spool},
                             metrics_s=1.0)
    else:
        cfg = layout.config(tmp_path / f"{name}.toml", coral_twin, port, {"spool_file": spool}, wav, metrics_s=1.0)
    return DaemonProcess(cfg, stdin_pipe=True)


def _said(daemon, pattern: str) -> int:
    return len(re.findall(pattern, daemon.log))


def _produce(daemon, pcm, kind: str, count: int, layout: Layout | None = None) -> None:
    """Feed `pcm`; wait until the daemon has logged `count` '<kind> Cat' lines in all (of the fed source, with
    `layout`) (the event is in the outbox: on disk, or counted as in memory only)."""
    daemon.feed(pcm)
    pattern = layout.said(kind) if layout is not None else rf"\b{kind} Cat\b"
    assert wait_until(lambda: _said(daemon, pattern) >= count, 30, 0.05), daemon.log


def _metrics_with(sub: Subscriber, key: str) -> dict:
    """The newest metrics message holding `key` published while `sub` listened (not one retained from before;
    waits for one)."""
    def latest():
        found = [json.loads(m.payload) for m in sub.received() if m.topic.endswith("/metrics") and not m.retain]
        return next((m for m in reversed(found) if key in m), None)
    assert sub.wait(lambda s: latest() is not None, 30), sub.payloads("/metrics")[-1:]
    return latest()


def _second_run(tmp_path, port: int, coral_twin, spool, events: int, layout: Layout | None = None, wav=None,
                at_end: int = 0) -> tuple[list, dict]:
    """A daemon started again on `spool` (with `layout`: its sources, "a" replaying `wav`): the events it sends (at
    least `events`, `at_end` of them once its input ends) and its first metrics with spool_lost_events; it ends
    cleanly at the end of its input."""
    sub = Subscriber(port, topics=(layout.each.events if layout else EVENTS, METRICS))
    second = _daemon(tmp_path, port, coral_twin, spool, "cfg2", layout, wav)
    try:
        assert sub.wait(lambda s: len(s.events()) >= events - at_end, 30), second.log
        metrics = _metrics_with(sub, "spool_lost_events")
        second.proc.stdin.close()
        assert second.proc.wait(15) == 0, second.log
        assert sub.wait(lambda s: len(s.events()) >= events, 30), second.log
    finally:
        second.kill()
        sub.close()
    return sub.events(), metrics


def _drained(sub: Subscriber, delivered: int) -> bool:
    """A metrics message says the daemon has `delivered` events acknowledged and nothing queued."""
    found = [json.loads(p) for p in sub.payloads("/metrics")]
    return any(m.get("queue_depth") == 0 and m.get("delivered_events", 0) >= delivered for m in found)


def _one_payload_per_key(events: list[dict]) -> dict:
    """(event_id, type) -> how many copies; fails if two copies of one key differ."""
    seen, copies = {}, {}
    for e in events:
        key = (e["event_id"], e["type"])
        assert seen.setdefault(key, e) == e, f"two payloads for {key}: {seen[key]} and {e}"
        copies[key] = copies.get(key, 0) + 1
    return copies


def _in_trouble(daemon) -> bool:
    return _said(daemon, r"cannot write") > _said(daemon, r"can be written again: \d+ event")


def _until_trouble(daemon, miaow, cats: int) -> int:
    """Feed whole Cats (the broker is away: they pile up in the spool) until the daemon says it cannot write (the
    room the spool already had on the full disk is used up); the Cats produced in all."""
    while not _in_trouble(daemon):
        assert cats < 30, daemon.log
        cats += 1
        _produce(daemon, segment(miaow), "end", cats)
    return cats


def test_a_state_directory_on_a_small_file_system_that_fills_then_frees(tmp_path, broker, coral_twin, miaow):
    """Cat B starts (on disk), the disk fills, B ends: its end cannot be written, and is sent. Two more Cats while
    it is full are sent, never written. The broker goes: Cat X and the start of Cat Y wait in memory only, and the
    daemon is killed. The next run, with the disk free: X's start and end and Y's start are counted lost (3), every
    other message was sent once, and B gets no second, cut-short end (its start is still open on disk)."""
    b = broker(persistence=True)
    sub = Subscriber(b.port, topics=(EVENTS, METRICS), session="watcher")
    with small_fs(tmp_path / "state") as state:
        spool = state / "spool.db"
        with WalWatch(spool) as wal:
            first = _daemon(tmp_path, b.port, coral_twin, spool)
            try:
                assert first.wait_log(r"MQTT: connected", 20), first.log
                _produce(first, segment(miaow), "end", 1)  # A
                _produce(first, miaow, "start", 2)  # B starts
                assert sub.wait(lambda s: _drained(s, 3), 30), first.log
                _truncate_log(spool)  # no room left in the log's file either: the next commit needs new blocks
                filler = fill(state)
                _produce(first, SILENCE, "end", 2)  # B ends
                assert first.wait_log(r"cannot write \(the file system is full", 10), first.log
                _produce(first, segment(miaow), "end", 3)
                _produce(first, segment(miaow), "end", 4)
                assert sub.wait(lambda s: _drained(s, 8), 30), first.log  # all sent and acknowledged
                b.save()
                b.kill()
                _produce(first, segment(miaow), "end", 5)  # X
                _produce(first, miaow, "start", 6)  # Y starts
                first.proc.kill()
                first.proc.wait(5)
            finally:
                first.kill()
            open_on_disk = _open_labels(spool)
            filler.unlink()
            b.start()
            second = _daemon(tmp_path, b.port, coral_twin, spool, "cfg2")
            metrics_sub = Subscriber(b.port, topics=(METRICS,))
            try:
                metrics = _metrics_with(metrics_sub, "spool_lost_events")
                _produce(second, segment(miaow), "end", 1)
                assert sub.wait(lambda s: len(s.events()) >= 10, 30), second.log
                second.proc.stdin.close()
                assert second.proc.wait(15) == 0, second.log
            finally:
                second.kill()
                sub.close()
                metrics_sub.close()
    events = sub.events()
    copies = _one_payload_per_key(events)  # no key twice with two payloads
    print(f"\nfull disk: 11 messages in the first run, 8 sent, 3 in memory only at the kill; open on disk after it: "
          f"{open_on_disk}; next run: {metrics['spool_lost_events']} lost; write-ahead log at most {wal.largest} bytes")
    assert _said(first, r"cannot write") == 1, first.log  # once, not once per event
    assert open_on_disk == ["Cat"]  # B's start: its end never reached the disk
    assert metrics["spool_lost_events"] == 3 and "3 event(s) were lost" in second.log
    assert len(copies) == 10 and set(copies.values()) == {1}  # 8 sent in the first run, 2 in the second; once
    assert [e["type"] for e in events] == ["start", "end"] * 5 and not any(e.get("cut_short") for e in events)
    assert 0 < wal.largest <= WAL_BOUND


def _truncate_log(spool) -> None:
    db = sqlite3.connect(spool, timeout=10)
    try:
        assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    finally:
        db.close()


def _open_labels(spool) -> list[str]:
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
    try:
        return [label for (label,) in db.execute("SELECT label FROM open_events")]
    finally:
        db.close()


def test_a_disk_that_fills_and_frees_while_the_daemon_runs_gets_what_waited_written(tmp_path, broker, coral_twin,
                                                                                    miaow):
    b = broker()
    b.kill()  # down for the whole first run: every event waits
    with small_fs(tmp_path / "state") as state:
        spool = state / "spool.db"
        first = _daemon(tmp_path, b.port, coral_twin, spool)
        try:
            _produce(first, segment(miaow), "end", 1)
            filler = fill(state)
            cats = _until_trouble(first, miaow, 1) + 1
            _produce(first, segment(miaow), "end", cats)  # one more while it is full
            filler.unlink()
            assert first.wait_log(r"can be written again: \d+ event\(s\) kept in memory meanwhile are on disk", 40), \
                first.log
            assert [t for _, t in rows(spool)] == ["start", "end"] * cats  # all of them, in order
            first.proc.kill()
            first.proc.wait(5)
        finally:
            first.kill()
        b.start()
        second_events, metrics = _second_run(tmp_path, b.port, coral_twin, spool, 2 * cats)
    events = second_events
    assert [e["type"] for e in events] == ["start", "end"] * cats
    assert [e["start_ts"] for e in events[::2]] == sorted(e["start_ts"] for e in events[::2])
    assert set(_one_payload_per_key(events).values()) == {1}
    assert metrics["spool_lost_events"] == 0 and metrics["spool_unwritten_events"] == 0


@pytest.mark.parametrize("layout", [None, Layout("two")], ids=["one source", "two sources"])
def test_a_state_directory_deleted_while_running_is_made_again_and_nothing_is_lost(tmp_path, broker, coral_twin,
                                                                                   miaow, layout):
    """With two sources, "a" hears a Cat that still sounds when the directory goes: the spool made again from
    memory keeps it open on its own source, b's ends do not close it, and its end at the SIGTERM is kept."""
    b = broker()
    first_sub = Subscriber(b.port, topics=(layout.each.events if layout else EVENTS,))
    state = tmp_path / "state"
    spool = state / "spool.db"
    first = _daemon(tmp_path, b.port, coral_twin, spool, layout=layout, wav=miaow)
    try:
        assert first.wait_log(r"MQTT: connected", 20), first.log
        _produce(first, segment(miaow), "end", 1, layout)
        assert first_sub.wait(lambda s: len(s.events()) >= 2 + bool(layout), 30), first.log  # with a's start
        b.kill()
        _produce(first, segment(miaow), "end", 2, layout)
        _produce(first, segment(miaow), "end", 3, layout)
        shutil.rmtree(state)
        state.mkdir()  # removed and made again, empty
        _produce(first, segment(miaow), "end", 4, layout)
        assert first.wait_log(r"can be written again: \d+ event", 30), first.log
        assert first.terminate() == 0
    finally:
        first.kill()
        first_sub.close()
    kept = 7 if layout else 6  # with a's end
    assert _said(first, r"deleted while in use") == 1, first.log
    assert f"{kept} event(s) not delivered at shutdown: kept in the spool" in first.log, first.log
    assert len(rows(spool)) == kept  # and they are
    b.start()
    second_events, metrics = _second_run(tmp_path, b.port, coral_twin, spool, kept + 2 * bool(layout), layout,
                                         miaow, at_end=bool(layout))
    events = first_sub.events() + second_events
    assert set(_one_payload_per_key(events).values()) == {1}
    for source, n in ({"a": 2, "b": 4} if layout else {"": 4}).items():
        assert [e["type"] for e in events if e["source"] == source] == ["start", "end"] * n, source
    assert not any(e.get("cut_short") for e in events)  # every end was kept: nothing was left open
    assert metrics["spool_lost_events"] == 0


def test_a_state_directory_that_cannot_be_made_again_is_said_lost_not_kept(tmp_path, broker, coral_twin, miaow):
    b = broker()
    b.kill()
    state = tmp_path / "state"
    first = _daemon(tmp_path, b.port, coral_twin, state / "spool.db")
    try:
        _produce(first, segment(miaow), "end", 1)
        shutil.rmtree(state)
        state.write_text("a file where the state directory was")
        _produce(first, segment(miaow), "end", 2)
        assert first.wait_log(r"deleted while in use", 30), first.log
        assert first.terminate() == 0
    finally:
        first.kill()
    assert "kept in the spool" not in first.log, first.log
    assert re.search(r"4 event\(s\) not delivered at shutdown: 4 lost: the spool cannot be written .*the next start "
                     r"cannot count them", first.log), first.log


def test_a_spool_with_records_no_one_can_act_on_never_stops_a_start(tmp_path, broker, coral_twin):
    """An open event dated 1e308 (no date can show it) and a row for a wildcard topic: skipped, counted,
    removed; the good row is sent."""
    spool = tmp_path / "state" / "spool.db"
    box = Outbox(10, "drop_oldest", str(spool))
    box.open()
    box.append(*event(1, "start", "Cat"))
    box.append(*event(2, "start", "Dog"))
    box.close()
    with sqlite3.connect(spool) as db:
        db.execute("UPDATE open_events SET payload = replace(payload, '\"start_ts\": 1001.0', '\"start_ts\": 1e308') "
                   "WHERE label = 'Cat'")
        db.execute("UPDATE outbox SET topic = 'edge-audio/+/events' WHERE payload LIKE '%\"id1\"%'")
        db.execute("UPDATE outbox SET topic = ? WHERE payload LIKE '%\"id2\"%'", (EVENTS,))
    b = broker()
    sub = Subscriber(b.port, topics=(EVENTS, METRICS))
    daemon = _daemon(tmp_path, b.port, coral_twin, spool)
    try:
        metrics = _metrics_with(sub, "spool_corrupt_records")
        assert sub.wait(lambda s: any(e["type"] == "end" for e in s.events()), 30), daemon.log
        daemon.proc.stdin.close()
        assert daemon.proc.wait(15) == 0, daemon.log
    finally:
        daemon.kill()
        sub.close()
    assert metrics["spool_corrupt_records"] == 2 and metrics["spool_recovered"] == 1
    # Dog's start is replayed and Dog is ended, cut short; Cat (no date) is not
    assert [(e["event_id"], e["type"], e.get("cut_short")) for e in sub.events()] == \
        [("id2", "start", False), ("id2", "end", True)]
    assert "Traceback" not in daemon.log
