"""The spool on a disk in trouble, with real SQLite files on a real file system: a small tmpfs that fills and frees,
one remounted read-only, a state directory deleted while in use. Crashes are a child process killed with SIGKILL.
Whatever happens, every event is on disk, delivered, or counted (`unwritten` now, `lost` at the next start), a
delivered event is never sent again, and an event's end never comes twice with different payloads."""

from __future__ import annotations

import logging
import os
import shutil

from edge.sinks.outbox import Outbox
from edge.sinks.spool_disk import WAL_BOUND
from spoolparts import SpoolChild, event, fill, remount, rows, small_fs
from tools.rig.ports import wait_until

RECOVERY_S = 30.0  # the keeper retries every 1 to 10 s


def _box(spool) -> Outbox:
    box = Outbox(1000, "drop_oldest", str(spool))
    box.open()
    return box


def _until_trouble(do, first: int) -> int:
    """Whole Bird events appended (via `do`) until the spool is in trouble (the log's room on the full disk runs
    out); the next free event number."""
    i = first
    while do(i) == 0:
        assert i < first + 200, "the spool never noticed the full disk"
        i += 1
    return i + 1


def test_a_full_disk_is_said_once_and_what_waited_in_memory_is_written_in_order_once_it_frees(tmp_path, caplog):
    caplog.set_level(logging.INFO, "edge.sinks")
    with small_fs(tmp_path / "state") as state:
        spool = state / "spool.db"
        box = _box(spool)
        box.append(*event(0, "start"))
        filler = fill(state)

        def bird(i):
            box.append(*event(i, "start", "Bird"))
            return box.unwritten
        last = _until_trouble(bird, 1)
        for i in range(last, last + 20):
            box.append(*event(i, "start", "Bird"))
        produced = [f"id{i}" for i in [0, *range(1, last + 20)]]
        assert "full" in box.problem, box.problem
        on_disk = rows(spool)
        assert len(on_disk) + box.unwritten == len(box) == len(produced)  # on disk, or counted in memory only
        assert caplog.text.count("cannot write") == 1, caplog.text  # said once, not once per event
        filler.unlink()
        assert wait_until(lambda: box.unwritten == 0, RECOVERY_S), box.problem
        assert box.problem == "" and "can be written again: " in caplog.text
        assert [i for i, _ in rows(spool)] == produced  # every one, in order
        again = _box(spool)  # as after a kill
        assert [m.event_key for m in again] == produced and again.lost == 0
        box.close()
        again.close()


def test_a_crash_while_the_disk_is_full_loses_only_what_is_counted_and_sends_nothing_twice(tmp_path):
    """Dog's end is sent while the disk is full, then the process dies: the next start must not end Dog again (a
    second end with another payload). Cat's end and Fox's start were in memory only: lost and counted; Cat is
    ended cut short at the next start (its real end was never sent), Fox not at all (nobody heard it start).
    Everything delivered stays delivered."""
    with small_fs(tmp_path / "state") as state:
        spool = state / "spool.db"
        child = SpoolChild(spool)
        try:
            child.do("append 1 start Dog")
            child.do("append 2 start Cat")
            filler = fill(state)
            last = _until_trouble(lambda i: (child.do(f"append {i} start Bird"), child.do(f"append {i} end Bird"))
                                  [1]["unwritten"], 100)
            child.do("append 1 end Dog")
            child.do("append 3 start Ant")
            child.do("set_aside refused by the broker")  # Dog's start: poisoned
            state_now = child.do(f"deliver {child.do('append 3 end Ant')['queued']}")  # all of it
            assert state_now["queued"] == 0 and state_now["unwritten"] == 0
            child.do("append 2 end Cat")
            figures = child.do("append 4 start Fox")
            assert figures["unwritten"] == 2 and "full" in figures["problem"]
        finally:
            log = child.kill()
        assert log.count("cannot write") == 1, log
        filler.unlink()
        again = _box(spool)
        assert again.lost == 2  # Cat's end and Fox's start
        assert len(again) == 0 and again.recovered == 0  # nothing delivered comes back, nor the poisoned one
        assert list(again.open_events) == ["id2"]  # Cat only
        assert again.set_aside_count == 1
        assert rows(spool) == [] and last > 100
        again.close()
        third = _box(spool)  # the loss stays counted, once
        assert third.lost == 2 and list(third.open_events) == ["id2"]
        third.close()


def test_a_shutdown_while_the_disk_is_full_says_what_is_lost_and_the_next_start_counts_it(tmp_path):
    with small_fs(tmp_path / "state") as state:
        spool = state / "spool.db"
        child = SpoolChild(spool)
        try:
            child.do("append 1 start Dog")
            filler = fill(state)
            _until_trouble(lambda i: child.do(f"append {i} start Bird")["unwritten"], 10)
            unwritten = child.do("append 2 start Cat")["unwritten"]
            note = child.do("close")["note"]
        finally:
            child.kill()
        kept = len(rows(spool))
        assert note.startswith(f"{kept} kept in the spool {spool} for the next start; {unwritten} lost: the spool "
                               "cannot be written (the file system is full"), note
        assert "the next start counts them" in note
        filler.unlink()
        again = _box(spool)
        assert again.lost == unwritten and len(again) == kept
        again.close()


def test_a_spool_on_a_read_only_file_system_at_start_is_loaded_and_written_once_it_is_writable(tmp_path, caplog):
    """(The kernel refuses to remount a file system read-only while the spool has it open for writing, short of an
    error remount: what a running daemon meets then is a write error like any other, as above.)"""
    with small_fs(tmp_path / "state", "1m") as state:
        spool = state / "spool.db"
        first = _box(spool)
        first.append(*event(1, "start"))
        first.append(*event(2, "start", "Cat"))
        first.append(*event(1, "end"))
        first.close()
        remount(state, "ro")
        try:
            box = _box(spool)  # never raises
            box.append(*event(3, "start", "Owl"))
            assert box.unwritten == 1 and "read-only" in box.problem, box.problem
            assert caplog.text.count("cannot write") == 1
        finally:
            remount(state, "rw")
        assert wait_until(lambda: box.unwritten == 0, RECOVERY_S), box.problem
        # what the spool held comes first, then what this run produced meanwhile
        assert rows(spool) == [("id1", "start"), ("id2", "start"), ("id1", "end"), ("id3", "start")]
        assert [m.event_key for m in box] == ["id1", "id2", "id1", "id3"] and box.recovered == 3
        box.close()
        again = _box(spool)
        assert sorted(again.open_events) == ["id2", "id3"]  # Cat, kept open for a start that can end it; and Owl
        again.close()


def test_a_spool_deleted_while_in_use_is_made_again_from_memory(tmp_path, caplog):
    state = tmp_path / "state"
    spool = state / "spool.db"
    box = _box(spool)
    for i, label in enumerate(["Bird", "Dog", "Fox"]):
        box.append(*event(i, label=label))
    box.append(*event(9, "start", "Cat"))
    box.set_aside(box.head(), "refused")
    shutil.rmtree(state)
    state.mkdir()  # removed and made again, empty, by someone else
    box.append(*event(4, "start", "Owl"))  # found at this event
    assert wait_until(lambda: box.unwritten == 0 and spool.exists(), RECOVERY_S), box.problem
    assert caplog.text.count("deleted while in use") == 1
    assert rows(spool) == [("id1", "start"), ("id2", "start"), ("id9", "start"), ("id4", "start")]
    shutil.rmtree(state)  # and again, with no event after it: the keeper's look finds it
    assert wait_until(lambda: spool.exists() and box.unwritten == 0, RECOVERY_S), box.problem
    assert box.shutdown_note() == f"kept in the spool {spool} for the next start"
    box.close()
    again = _box(spool)
    assert [m.event_key for m in again] == ["id1", "id2", "id9", "id4"] and again.set_aside_count == 1
    assert again.lost == 0 and {"id1", "id2", "id9", "id4"} <= set(again.open_events)
    again.close()


def test_a_spool_whose_folder_cannot_be_made_again_never_claims_to_keep_events(tmp_path):
    state = tmp_path / "state"
    spool = state / "spool.db"
    box = _box(spool)
    box.append(*event(1, "start"))
    shutil.rmtree(state)
    state.write_text("a file where the folder was")  # the folder cannot be made again
    box.append(*event(2, "start", "Cat"))
    note = box.shutdown_note()
    assert note.startswith("2 lost: the spool cannot be written") and "cannot count them" in note, note
    box.close()


def test_the_write_ahead_log_stays_under_its_bound(tmp_path):
    spool = tmp_path / "spool.db"
    box = _box(spool)
    wal = str(spool) + "-wal"
    largest = 0
    for burst in range(20):
        for i in range(30):
            box.append(*event(burst * 100 + i, "start" if i % 2 == 0 else "end"))
            largest = max(largest, os.path.getsize(wal))
        while len(box):
            box.remove_head(box.head())
            largest = max(largest, os.path.getsize(wal))
        box.mark_alive()
    print(f"\nwrite-ahead log: at most {largest} bytes over 600 events (bound {WAL_BOUND})")
    assert 0 < largest <= WAL_BOUND
    box.close()


def test_a_problem_that_lasts_is_said_again_at_the_reminder_not_at_every_event(tmp_path, caplog, monkeypatch):
    from edge.sinks import spool_keeper
    monkeypatch.setattr(spool_keeper, "REMIND_S", 0.5)  # 10 minutes in the product
    with small_fs(tmp_path / "state") as state:
        box = _box(state / "spool.db")
        filler = fill(state)
        _until_trouble(lambda i: (box.append(*event(i, "start", "Bird")), box.unwritten)[1], 1)
        for i in range(300, 320):
            box.append(*event(i, "start", "Bird"))
        assert wait_until(lambda: "still cannot be written (the file system is full" in caplog.text, RECOVERY_S)
        assert caplog.text.count("cannot write") == 1
        reminder = next(r.getMessage() for r in caplog.records if "still cannot be written" in r.getMessage())
        assert reminder.endswith(f": {box.unwritten} event(s) in memory only"), reminder  # nothing came since
        filler.unlink()
        assert wait_until(lambda: box.unwritten == 0, RECOVERY_S), box.problem
        box.close()
