"""The clips folder on real file systems, with real FLAC files: the commit protocol and the record's format, what
open() cleans up (unfinished writes, audio without a record, unreadable records), the age and size rules with each
label's newest clips protected, and a small tmpfs filled clip after clip where free space never goes under
min_free_mb and no write fails. A folder that cannot be made is one line from open()."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import subprocess

import numpy as np
import pytest
import soundfile as sf

from edge.core.clipparams import ClipParams
from edge.sinks.clipstore import ClipStore, valid_record

RATE = 16000
BYTES_PER_SECOND = RATE * 2  # noise does not compress: a FLAC file of it is about its PCM size
T0 = 1_700_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def params(**kw) -> ClipParams:
    base = {"enabled": True, "max_age_days": 0.0, "max_total_mb": 0.0, "min_free_mb": 0.0, "min_per_label": 0}
    return ClipParams(**{**base, **kw})


def eid(i: int) -> str:
    return f"{i:04d}" + hashlib.sha1(str(i).encode()).hexdigest()[:28]


def record(event_id: str, label: str = "Dog", start: float = T0, status: str = "kept") -> dict:
    return {"event_id": event_id, "source": "", "label": label, "device_id": "pi", "status": status, "file": None,
            "format": None, "start_ts": start, "event_start_ts": start + 3.0, "event_end_ts": start + 4.0,
            "offset_s": 3.0, "seconds": 1.0, "sample_rate": RATE}


def write_flac(path, seconds: float = 1.0, seed: int = 0) -> None:
    """Noise as the writer would write it: FLAC, 16 kHz int16, fsynced."""
    noise = np.random.default_rng(seed).integers(-20000, 20000, int(seconds * RATE), dtype=np.int16)
    sf.write(str(path), noise, RATE, format="FLAC")
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def put(store: ClipStore, i: int, label: str = "Dog", start: float = T0, seconds: float = 1.0,
        audio: bool = True) -> dict:
    """Clip `i` committed as the writer does (a record alone when not `audio`)."""
    rec = record(eid(i), label, start, "kept" if audio else "withheld: speech")
    tmp = None
    if audio:
        tmp = store.temp_path(eid(i), "flac")
        write_flac(tmp, seconds, seed=i)
    return store.commit(rec, tmp)


def files(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def on_disk(store: ClipStore) -> set[str]:
    """What the index says the folder holds."""
    out = set()
    for r in store.records():
        out.add(f"{r['event_id']}.json")
        if r["file"]:
            out.add(r["file"])
    return out


def mount_tmpfs(folder, size: str, ro: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}" + (",ro" if ro else ""), "tmpfs",
                          str(folder)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {res.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    """A real 4 MiB tmpfs (the free-space rule needs a file system that fills), unmounted after the test."""
    mnt = tmp_path / "fs"
    mount_tmpfs(mnt, "4m")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def free_bytes(folder) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def test_a_commit_is_the_audio_then_its_record_as_the_design_says(tmp_path):
    clock = Clock()
    store = ClipStore(tmp_path / "clips", params(), clock)
    assert store.open() == ""
    assert (os.stat(tmp_path / "clips").st_mode & 0o777) == 0o750
    tmp = store.temp_path(eid(1), "flac")
    assert tmp == tmp_path / "clips" / f".{eid(1)}.flac.tmp"
    write_flac(tmp, 1.5, seed=1)
    clock.now = T0 + 10
    stored = store.commit(record(eid(1), start=T0), tmp)
    folder = tmp_path / "clips"
    assert files(folder) == {f"{eid(1)}.flac", f"{eid(1)}.json"}  # no temporary file left
    text = (folder / f"{eid(1)}.json").read_text()
    on_file = json.loads(text)
    assert on_file == stored and text == json.dumps(stored, sort_keys=True)
    audio = (folder / f"{eid(1)}.flac").read_bytes()
    assert stored["file"] == f"{eid(1)}.flac" and stored["format"] == "flac" and stored["written_ts"] == T0 + 10
    assert stored["bytes"] == len(audio) and stored["sha256"] == hashlib.sha256(audio).hexdigest()
    data, rate = sf.read(str(store.path_of(stored)), dtype="int16")
    assert rate == RATE and len(data) == 24000
    withheld = put(store, 2, start=T0 + 5, audio=False)
    assert withheld["file"] is None and store.path_of(withheld) is None
    assert [r["event_id"] for r in store.records()] == [eid(2), eid(1)]  # newest first
    stats = store.stats()
    assert stats["clips_kept"] == 1 and stats["clips_withheld"] == 1 and stats["clips_bytes"] == len(audio)
    assert stats["clips_deleted"] == 0 and stats["clips_free_mb"] > 0


def test_open_deletes_leftovers_and_unreadable_records_and_keeps_the_clips(tmp_path, caplog):
    folder = tmp_path / "clips"
    first = ClipStore(folder, params())
    assert first.open() == ""
    put(first, 1)
    put(first, 2, audio=False)
    kept = files(folder)
    write_flac(first.temp_path(eid(3), "flac"))  # a write cut short before the rename
    (folder / f".{eid(4)}.json.tmp").write_text("{")  # ... before the record's rename
    write_flac(folder / f"{eid(5)}.flac")  # renamed, but no record: not committed
    write_flac(folder / f"{eid(6)}.flac")
    (folder / f"{eid(6)}.json").write_text('{"event_id": "')  # not JSON
    write_flac(folder / f"{eid(7)}.flac")
    (folder / f"{eid(7)}.json").write_text(json.dumps({"event_id": eid(7), "label": "Dog"}))  # fields missing
    outside = tmp_path / "precious.flac"
    write_flac(outside)
    bad = {**record(eid(8)), "file": "../precious.flac"}  # a record naming a file that is not its own
    (folder / f"{eid(8)}.json").write_text(json.dumps(bad))
    gone = {**record(eid(9)), "file": f"{eid(9)}.flac"}  # its audio deleted, the record not yet (a cut deletion)
    (folder / f"{eid(9)}.json").write_text(json.dumps(gone))
    (folder / "README.txt").write_text("not ours")
    (folder / f"{eid(10)}.json").write_text("[" * 50000 + "]" * 50000)  # JSON nested too deep to parse

    caplog.set_level(logging.INFO, logger="edge.clips")
    store = ClipStore(folder, params())
    assert store.open() == ""
    assert files(folder) == kept | {"README.txt"}
    assert outside.exists()
    assert on_disk(store) == kept and {r["event_id"] for r in store.records()} == {eid(1), eid(2)}
    assert store.unreadable == 4
    unreadable = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(unreadable) == 1 and "4 unreadable" in unreadable[0] and "\n" not in unreadable[0]


def test_a_reader_loads_the_index_without_touching_a_writers_files(tmp_path):
    folder = tmp_path / "clips"
    writer = ClipStore(folder, params())
    assert writer.open() == ""
    put(writer, 1)
    tmp = writer.temp_path(eid(2), "flac")
    write_flac(tmp)  # the writer is in the middle of clip 2
    (folder / f"{eid(3)}.json").write_text("{")
    reader = ClipStore(folder, params())
    assert reader.load() == ""
    assert [r["event_id"] for r in reader.records()] == [eid(1)]
    assert tmp.exists() and (folder / f"{eid(3)}.json").exists()
    writer.commit(record(eid(2), start=T0 + 1), tmp)
    assert [r["event_id"] for r in writer.records()] == [eid(2), eid(1)]


def test_the_age_rule_keeps_each_labels_newest_clips(tmp_path, caplog):
    folder = tmp_path / "clips"
    first = ClipStore(folder, params(), Clock(T0))  # no limits while the clips are made
    assert first.open() == ""
    for i in range(5):  # Dog clips 0..4, a day apart, the newest last: 10 to 6 days old
        put(first, i, "Dog", start=T0 - (10 - i) * DAY)
    put(first, 10, "Cat", start=T0 - 20 * DAY)  # Cat's only clip, very old
    put(first, 11, "Dog", start=T0 - 30 * DAY, audio=False)  # withheld: no per-label minimum
    put(first, 12, "Dog", start=T0 - DAY, audio=False)  # withheld, young
    assert len(first.records()) == 8
    caplog.set_level(logging.INFO, logger="edge.clips")
    clock = Clock(T0 + 1.5 * DAY)
    store = ClipStore(folder, params(max_age_days=7, min_per_label=2), clock)
    assert store.open() == ""  # retention at open
    assert {r["event_id"] for r in store.records()} == {eid(3), eid(4), eid(10), eid(12)}
    assert on_disk(store) == files(folder) and store.stats()["clips_deleted"] == 4
    lines = [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("clips: retention deleted 3 clips (")
    assert lines[0].endswith(" KiB) and 1 records without audio: older than max_age_days")
    clock.now = T0 + 100 * DAY  # everything is old now: the record alone goes, each label's newest stay
    assert store.enforce() == 1
    assert {r["event_id"] for r in store.records()} == {eid(3), eid(4), eid(10)} and on_disk(store) == files(folder)


def test_the_size_rule_deletes_the_oldest_but_keeps_each_labels_newest(tmp_path):
    limit_mb = 0.25  # about 8 one-second noise clips
    store = ClipStore(tmp_path / "clips", params(max_total_mb=limit_mb, min_per_label=3), Clock())
    assert store.open() == ""
    put(store, 100, "Cat", start=T0 - 1000)  # Cat's two clips are the oldest of all
    put(store, 101, "Cat", start=T0 - 999)
    put(store, 102, "Dog", start=T0 - 998, audio=False)  # a record alone weighs nothing
    for i in range(20):
        put(store, i, "Dog", start=T0 + i)
        assert store.stats()["clips_bytes"] <= limit_mb * 2**20
    left = [r["event_id"] for r in store.records()]
    assert eid(100) in left and eid(101) in left and eid(102) in left  # protected, and a record alone
    dogs = [r["event_id"] for r in store.records() if r["label"] == "Dog" and r["file"]]
    assert dogs == [eid(i) for i in range(19, 19 - len(dogs), -1)]  # the newest Dogs, none missing between
    assert 3 <= len(dogs) < 20 and store.stats()["clips_deleted"] == 20 - len(dogs)
    assert sum((tmp_path / "clips" / r["file"]).stat().st_size for r in store.records() if r["file"]) \
        == store.stats()["clips_bytes"]


def test_the_size_rule_never_deletes_a_labels_protected_clips(tmp_path):
    store = ClipStore(tmp_path / "clips", params(max_total_mb=0.05, min_per_label=3), Clock())
    assert store.open() == ""
    for i in range(6):
        put(store, i, "Dog" if i % 2 else "Cat", start=T0 + i)
    assert {r["event_id"] for r in store.records()} == {eid(i) for i in range(6)}  # 3 each: over the limit, kept
    assert store.stats()["clips_bytes"] > 0.05 * 2**20
    put(store, 6, "Cat", start=T0 + 6)
    assert {r["event_id"] for r in store.records()} == {eid(i) for i in range(1, 7)}  # Cat's oldest went


def test_clip_after_clip_on_a_small_disk_never_fills_it(tmpfs, caplog):
    """4 MiB, min_free_mb 3: about 1 MiB for clips; 60 clips of 1-3 s (32-96 KiB each) go through it. Every
    clip's label is protected by min_per_label, and still the oldest go: free space comes first."""
    min_free = 3.0
    folder = tmpfs / "clips"
    store = ClipStore(folder, params(min_free_mb=min_free, min_per_label=100), Clock())
    assert store.open() == ""
    caplog.set_level(logging.INFO, logger="edge.clips")
    for i in range(60):
        seconds = 1.0 + (i % 3)
        estimate = int(seconds * BYTES_PER_SECOND * 1.05) + 4096
        assert store.room_for(estimate)
        assert free_bytes(folder) >= min_free * 2**20 + estimate  # room made before the clip is written
        put(store, i, "Dog", start=T0 + i, seconds=seconds)  # an ENOSPC here would fail the test
        assert free_bytes(folder) >= min_free * 2**20
    left = [r["event_id"] for r in store.records()]
    assert left[0] == eid(59) and 5 <= len(left) < 60 and store.stats()["clips_deleted"] == 60 - len(left)
    assert left == [eid(i) for i in range(59, 59 - len(left), -1)]  # the oldest went
    assert files(folder) == on_disk(store)
    assert any("under min_free_mb" in r.getMessage() for r in caplog.records)


def test_when_something_else_takes_the_disk_the_clips_go_and_the_next_is_skipped(tmpfs):
    folder = tmpfs / "clips"
    store = ClipStore(folder, params(min_free_mb=2.0, min_per_label=100), Clock())
    assert store.open() == ""
    for i in range(5):
        assert store.room_for(BYTES_PER_SECOND * 2)
        put(store, i, start=T0 + i, audio=i != 2)
    assert store.room_for(10 * 2**20) is False  # larger than the disk: nothing deleted for it
    assert len(store.records()) == 5
    spool = tmpfs / "spool.db"  # the event spool grows until only 1.5 MiB is left free
    spool.write_bytes(b"\0" * (free_bytes(tmpfs) - int(1.5 * 2**20)))
    assert store.room_for(BYTES_PER_SECOND) is False
    assert store.records() == [] and files(folder) == set()  # every clip went, for the spool
    assert free_bytes(tmpfs) >= 1.5 * 2**20


def test_a_record_that_cannot_be_written_leaves_no_audio_behind(tmpfs):
    folder = tmpfs / "clips"
    store = ClipStore(folder, params(), Clock())
    assert store.open() == ""
    tmp = store.temp_path(eid(1), "flac")
    write_flac(tmp)
    filler = tmpfs / "filler"
    with open(filler, "wb", buffering=0) as f, pytest.raises(OSError) as full:  # every free page taken
        while True:
            f.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as err:
        store.commit(record(eid(1)), tmp)
    assert err.value.errno == errno.ENOSPC
    assert files(folder) == set() and store.records() == []


def test_a_folder_that_cannot_be_made_or_written_is_one_line_from_open(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    problem = ClipStore(afile / "clips", params()).open()
    assert problem == f"clips folder {afile / 'clips'}: Not a directory: clips are off"
    problem = ClipStore(afile, params()).open()
    assert problem.startswith(f"clips folder {afile}: ") and problem.endswith("clips are off")
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "1m", ro=True)
    try:
        problem = ClipStore(ro / "clips", params()).open()
        assert problem == f"clips folder {ro / 'clips'}: Read-only file system: clips are off"
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True, check=False)


def test_an_existing_folder_on_a_read_only_disk_is_one_line_from_open(tmpfs):
    (tmpfs / "clips").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    problem = ClipStore(tmpfs / "clips", params()).open()
    assert problem == f"clips folder {tmpfs / 'clips'}: Read-only file system: clips are off"


def test_find_takes_a_unique_prefix(tmp_path):
    store = ClipStore(tmp_path / "clips", params(), Clock())
    assert store.open() == ""
    ids = ["abc123", "abd456", "b789", "b78"]
    for n, i in enumerate(ids):
        store.commit(record(i, start=T0 + n), None)
    assert store.find("abc")["event_id"] == "abc123"
    assert store.find("abd456")["event_id"] == "abd456"
    assert store.find("b78")["event_id"] == "b78"  # a whole id, though another starts with it
    assert store.find("zz") is None and store.find("") is None
    with pytest.raises(ValueError, match="'ab' matches 2 clips: abc123, abd456"):
        store.find("ab")


def test_records_naming_other_files_or_odd_ids_are_refused():
    good = {**record("abc"), "file": "abc.opus"}
    assert valid_record(good, "abc") and not valid_record(good, "abd")
    assert not valid_record({**good, "file": "../abc.opus"}) and not valid_record({**good, "file": "abc.mp3"})
    assert not valid_record({**good, "event_id": "../x", "file": None})
    assert not valid_record({**good, "start_ts": "yesterday"}) and not valid_record({**good, "start_ts": True})
    assert not valid_record([good])
    with pytest.raises(ValueError):
        ClipStore("/nonexistent", params()).temp_path("../x", "flac")
