"""The recorder's store on SQLite and on a real PostgreSQL server (tools/rig/postgres.py): idempotent on
(event_id, type), starts joined with their ends, clips, status, metrics, the fleet's health, the timeline's filters,
counts, retention, export, odd text kept verbatim, one-line errors, and migrations applied once."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import pytest

from edge.app.recorder.store import open_store
from edge.core.errors import InputError
from edge.core.events import Event

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
ODD = ("'; DROP TABLE events; --", "猫", "<script>alert(1)</script>", 'a "quoted" \'label\'', "100% ?%s")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/recorder.db"
    return request.getfixturevalue("postgres").url


@pytest.fixture
def store(url):
    s = open_store(url)
    yield s
    s.close()


def ev(kind: str, event_id: str, label="cat", device="dev1", source="", start=T0, duration=1.5, cut_short=False,
       clip=None) -> dict:
    end = kind == "end"
    return Event(type=kind, event_id=event_id, label=label, class_index=7, start_ts=start,
                 end_ts=start + duration if end else None, peak_score=0.91 if end else 0.8, mean_score=0.66,
                 duration_s=duration if end else 0.0, level_dbfs=-23.5, device_id=device, model="m",
                 delegate="cpu", cut_short=cut_short, source=source, clip=clip).to_dict()


def add_pair(store, event_id, **kw) -> None:
    assert store.add_event(ev("start", event_id, **kw), T0)
    assert store.add_event(ev("end", event_id, **kw), T0 + 2)


def test_each_message_is_stored_once_and_a_start_joins_its_end(store):
    start, end = ev("start", "e1"), ev("end", "e1", clip={"status": "kept", "file": "e1.flac"})
    assert [store.add_event(start, T0) for _ in range(3)] == [True, False, False]
    assert [store.add_event(end, T0 + 2) for _ in range(3)] == [True, False, False]
    totals = store.totals()
    assert (totals["events"], totals["messages"]) == (1, 2)
    row = store.event("e1")
    assert row["start"] == start and row["end"] == end
    assert (row["start_ts"], row["end_ts"], row["duration_s"], row["peak_score"]) == (T0, T0 + 1.5, 1.5, 0.91)
    assert (row["label"], row["device_id"], row["source"], row["clip_status"]) == ("cat", "dev1", "", "kept")
    assert row["cut_short"] is False and row["has_clip"] is False
    assert store.event("nope") is None and store.clip("nope") is None


def test_an_end_before_its_start_makes_the_row_and_the_start_fills_it_in(store):
    end, start = ev("end", "e2"), ev("start", "e2")
    assert store.add_event(end, T0) and not store.add_event(end, T0)
    assert store.event("e2")["start"] is None
    assert store.add_event(start, T0 + 1) and not store.add_event(start, T0 + 1)
    assert store.totals()["events"] == 1
    row = store.event("e2")
    assert (row["start"], row["end"]) == (start, end)
    assert (row["end_ts"], row["peak_score"], row["duration_s"]) == (T0 + 1.5, 0.91, 1.5)  # the end's, kept


def test_a_cut_short_end_alone_is_an_event(store):
    assert store.add_event(ev("end", "cut", cut_short=True, duration=0.5), T0)
    [row] = store.events()
    assert row["event_id"] == "cut" and row["cut_short"] is True and row["duration_s"] == 0.5


def test_clips_are_stored_once_per_event(store, tmp_path):
    add_pair(store, "c1", clip={"status": "kept"})
    add_pair(store, "c2", start=T0 + 10)
    path = tmp_path / "dev1" / "c1.flac"
    assert store.add_clip("c1", "dev1", str(path), 1234, "ab" * 32, T0 + 3)
    assert not store.add_clip("c1", "dev1", str(path), 1234, "ab" * 32, T0 + 4)
    assert store.clip("c1") == {"path": str(path), "bytes": 1234, "sha256": "ab" * 32}
    assert {r["event_id"]: r["has_clip"] for r in store.events()} == {"c1": True, "c2": False}
    assert store.event("c1")["clip_status"] == "kept" and store.totals()["clips"] == 1


def test_status_since_moves_only_when_it_changes(store):
    store.set_status("dev1", "", True, 100.0)
    store.set_status("dev1", "", True, 200.0)
    assert _row(store.devices(300.0), "dev1")[:2] == (True, 100.0)
    store.set_status("dev1", "", False, 300.0)
    store.set_status("dev1", "", True, 250.0)  # older than what is stored: changes nothing
    assert _row(store.devices(400.0), "dev1")[:2] == (False, 300.0)


def _row(devices, device, source=""):
    [d] = [d for d in devices if (d["device_id"], d["source"]) == (device, source)]
    return d["online"], d["since_ts"], d


def test_metrics_keep_their_history_and_the_latest_per_source(store):
    store.add_metrics("dev1", "", {"windows": 1}, T0)
    store.add_metrics("dev1", "", {"windows": 2}, T0 + 30)
    store.add_metrics("dev1", "", {"windows": 2}, T0 + 30)  # the same message again
    store.add_metrics("dev1", "", {"windows": 0}, T0 - 30)  # an older one: history only
    store.add_metrics("dev1", "mic", {"level_dbfs": -40.0}, T0 + 31)
    assert store.latest("dev1") == {"": {"windows": 2}, "mic": {"level_dbfs": -40.0}}
    assert store.latest("other") == {}
    assert store.totals()["metrics"] == 4


def test_devices_show_stale_and_degraded_with_the_reason(store):
    now = T0 + 1000
    healthy = {"delegate": "edgetpu", "delegate_reason": "Edge TPU delegate loaded", "real_time_factor": 0.02,
               "queue_depth": 3, "clips_bytes": 4096, "failed": "", "mqtt_error": "", "spool_problem": "",
               "clips_problem": ""}
    store.add_metrics("ok", "", healthy, now - 400)
    store.add_metrics("ok", "", healthy, now - 300)  # every 100 s: stale only after 300 s
    store.add_metrics("ok", "mic", {"real_time_factor": 0.01, "problem": "", "online": True}, now - 10)
    store.add_metrics("old", "", healthy, now - 121)
    store.add_metrics("sick", "", {**healthy, "mqtt_error": "connection refused", "delegate": "cpu",
                                   "delegate_reason": "no TPU; using the CPU twin m.tflite"}, now - 5)
    store.set_status("ok", "", True, now - 500)
    store.set_status("ok", "mic", True, now - 500)
    store.set_status("gone", "", False, now - 50)
    store.set_status("gone", "mic", True, now - 60)  # its device's last will covers it
    add_pair(store, "today1", device="ok", source="mic", start=now - 100)
    add_pair(store, "today2", device="ok", start=now - 200)
    add_pair(store, "yesterday", device="ok", source="mic", start=now - 2 * 86400)
    store.add_event(ev("end", "x", device="quiet"), now)  # events, nothing else
    rows = store.devices(now)
    ok, mic, old, sick = (_row(rows, d, s)[2] for d, s in (("ok", ""), ("ok", "mic"), ("old", ""), ("sick", "")))
    assert (ok["online"], ok["since_ts"], ok["stale"], ok["degraded"], ok["problem"]) == (True, now - 500, False,
                                                                                          False, "")
    assert (ok["delegate"], ok["real_time_factor"], ok["queue_depth"], ok["clips_bytes"]) == ("edgetpu", 0.02, 3, 4096)
    assert (ok["events_today"], mic["events_today"], ok["last_metrics_ts"]) == (2, 1, now - 300)
    assert (mic["delegate"], mic["queue_depth"], mic["real_time_factor"], mic["stale"]) == ("edgetpu", 3, 0.01, False)
    assert old["stale"] and not old["degraded"]
    assert sick["degraded"] and not sick["stale"]
    assert "mqtt_error: connection refused" in sick["problem"] and "CPU twin" in sick["problem"]
    assert _row(rows, "gone", "mic")[:2] == (False, now - 50)
    quiet = _row(rows, "quiet")[2]
    assert quiet["online"] is None and quiet["stale"] and quiet["last_metrics_ts"] is None
    assert store.device_ids() == ["gone", "ok", "old", "quiet", "sick"]


def _timeline(store):
    for i, (device, source, label) in enumerate([("d1", "", "cat"), ("d1", "mic", "dog"), ("d2", "mic", "cat"),
                                                 ("d2", "", "bird"), ("d1", "", "cat")]):
        add_pair(store, f"t{i}", device=device, source=source, label=label, start=T0 + 3600 * i)


def test_the_timeline_filters_by_device_source_label_and_time(store):
    _timeline(store)
    ids = lambda **kw: [r["event_id"] for r in store.events(**kw)]  # noqa: E731
    assert ids() == ["t4", "t3", "t2", "t1", "t0"]  # newest first
    assert ids(device_id="d1") == ["t4", "t1", "t0"]
    assert ids(source="mic") == ["t2", "t1"]
    assert ids(label="cat") == ["t4", "t2", "t0"]
    assert ids(device_id="d1", label="cat", source="") == ["t4", "t0"]
    assert ids(since=T0 + 3600, until=T0 + 3 * 3600) == ["t2", "t1"]
    assert ids(limit=2, offset=1) == ["t3", "t2"]
    assert ids(device_id="nobody") == []
    assert store.labels() == ["bird", "cat", "dog"]
    assert set(store.events()[0]) == {"event_id", "device_id", "source", "label", "start_ts", "end_ts",
                                      "duration_s", "peak_score", "mean_score", "level_dbfs", "cut_short",
                                      "clip_status", "has_clip"}


def test_counts_per_hour_and_day(store):
    _timeline(store)
    hour0 = T0 // 3600 * 3600
    assert store.counts("hour", T0) == [{"bucket_ts": hour0 + 3600 * i, "label": label, "count": 1}
                                        for i, label in enumerate(["cat", "dog", "cat", "bird", "cat"])]
    day = T0 // 86400 * 86400  # T0 is 22:13 UTC: t0 and t1 that day, the rest the next
    assert store.counts("day", T0, label="cat") == [{"bucket_ts": day, "label": "cat", "count": 1},
                                                    {"bucket_ts": day + 86400, "label": "cat", "count": 2}]
    assert store.counts("day", T0 + 3600, device_id="d1") == [
        {"bucket_ts": day, "label": "dog", "count": 1}, {"bucket_ts": day + 86400, "label": "cat", "count": 1}]
    with pytest.raises(InputError):
        store.counts("week", T0)


def _clip(store, folder, event_id, nbytes, ts, start):
    add_pair(store, event_id, start=start)
    path = folder / f"{event_id}.flac"
    path.write_bytes(b"x" * nbytes)
    assert store.add_clip(event_id, "dev1", str(path), nbytes, "0" * 64, ts)
    return path


def test_retention_by_age_deletes_old_events_their_clips_and_metrics(store, tmp_path):
    now = time.time()
    old = _clip(store, tmp_path, "old", 100, now - 10 * 86400, now - 10 * 86400)
    new = _clip(store, tmp_path, "new", 100, now - 60, now - 60)
    store.add_metrics("dev1", "", {"n": 1}, now - 9 * 86400)
    store.add_metrics("dev1", "", {"n": 2}, now - 60)
    store.set_status("dev1", "", True, now - 20 * 86400)
    gone = store.retention(max_age_days=5, max_clip_mb=0)
    assert (gone["events"], gone["clips"], gone["metrics"], gone["clip_bytes"]) == (1, 1, 1, 100)
    assert not old.exists() and new.exists()
    assert [r["event_id"] for r in store.events()] == ["new"] and store.clip("old") is None
    assert store.totals()["messages"] == 2 and store.totals()["status"] == 1
    assert store.latest("dev1") == {"": {"n": 2}}
    assert store.add_event(ev("end", "old", start=now - 10 * 86400), now)  # its key went with it


def test_retention_by_size_deletes_the_oldest_clips_first(store, tmp_path):
    kib = 1024
    paths = [_clip(store, tmp_path, f"c{i}", 300 * kib, T0 + i, T0 + i) for i in range(5)]
    gone = store.retention(max_age_days=0, max_clip_mb=1)
    assert (gone["clips"], gone["clip_bytes"], gone["events"]) == (2, 600 * kib, 0)
    assert [p.exists() for p in paths] == [False, False, True, True, True]
    assert [store.clip(f"c{i}") is not None for i in range(5)] == [False, False, True, True, True]
    assert store.totals()["events"] == 5
    assert store.retention(0, 1)["clips"] == 0


def test_export_csv_and_jsonl_read_back(store):
    _timeline(store)
    for i, odd in enumerate(ODD):
        add_pair(store, f"odd{i}", device=odd, label=odd, source=odd, start=T0 - i)
    out = io.StringIO()
    assert store.export("jsonl", out) == 10
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows == store.events(limit=100)
    out = io.StringIO()
    assert store.export("csv", out, label="cat") == 3
    back = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["event_id"] for r in back] == ["t4", "t2", "t0"] and back[0]["has_clip"] == "False"
    out = io.StringIO(newline="")
    assert store.export("csv", out, device_id=ODD[0]) == 1
    [row] = csv.DictReader(io.StringIO(out.getvalue(), newline=""))
    assert (row["device_id"], row["label"], float(row["start_ts"])) == (ODD[0], ODD[0], T0)
    with pytest.raises(InputError):
        store.export("xml", io.StringIO())


def test_export_pages_through_many_events(store):
    for i in range(2500):
        store.add_event(ev("end", f"m{i:05d}", start=T0 + i // 3), T0)  # ties on start_ts across pages
    out = io.StringIO()
    assert store.export("jsonl", out) == 2500
    ids = [json.loads(line)["event_id"] for line in out.getvalue().splitlines()]
    assert len(set(ids)) == 2500


def test_odd_text_is_stored_and_returned_verbatim(store):
    for i, odd in enumerate(ODD):
        add_pair(store, f"{odd}-{i}", device=odd, source=odd, label=odd, start=T0 + i)
        store.set_status(odd, odd, True, T0)
        store.add_metrics(odd, odd, {"problem": odd}, T0)
    for i, odd in enumerate(ODD):
        [row] = store.events(device_id=odd, source=odd, label=odd)
        assert (row["event_id"], row["device_id"], row["source"], row["label"]) == (f"{odd}-{i}", odd, odd, odd)
        assert store.event(f"{odd}-{i}")["end"]["label"] == odd
        assert store.latest(odd) == {odd: {"problem": odd}}
    assert store.labels() == sorted(store.labels()) and set(store.labels()) == set(ODD)
    assert set(store.device_ids()) == set(ODD)
    assert {d["problem"] for d in store.devices(T0)} == {f"problem: {odd}" for odd in ODD}
    assert store.totals()["events"] == len(ODD)  # the table is still there
    for bad in ("nul\x00", "\ud800"):
        with pytest.raises(ValueError):
            store.add_event(ev("start", "bad", label=bad), T0)


def test_concurrent_writers_store_each_message_once(store):
    def write(k):
        for i in range(40):
            store.add_event(ev("start", f"e{i}"), T0)
            store.add_event(ev("end", f"e{i}"), T0)
            store.add_metrics(f"d{k}", "", {"i": i}, T0 + i)
    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    totals = store.totals()
    assert (totals["events"], totals["messages"], totals["metrics"]) == (40, 80, 160)


def test_migrations_run_once_and_are_recorded(url):
    first = open_store(url)
    assert first.schema_version == 1
    add_pair(first, "kept")
    applied = first._rows("SELECT version, applied_ts FROM schema_version")
    first.close()
    again = open_store(url)
    assert again._rows("SELECT version, applied_ts FROM schema_version") == applied and len(applied) == 1
    assert [r["event_id"] for r in again.events()] == ["kept"] and again.schema_version == 1
    again.close()


def _one_line(exc_info, *needles):
    text = str(exc_info.value)
    assert "\n" not in text and all(n in text for n in needles), text
    return text


def test_bad_urls_are_one_line_input_errors(tmp_path):
    for url in ("mysql://u:pw@host/db", "recorder.db", "sqlite://"):
        with pytest.raises(InputError) as e:
            open_store(url)
        _one_line(e)
    with pytest.raises(InputError) as e:
        open_store(f"sqlite:///{tmp_path}")
    _one_line(e, str(tmp_path), "folder")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an SQLite database at all, just bytes" * 100)
    with pytest.raises(InputError) as e:
        open_store(f"sqlite:///{junk}")
    _one_line(e, str(junk), "not an SQLite database")


def test_an_unreachable_server_and_a_refused_login_are_one_line_input_errors(postgres):
    from tools.rig.ports import free_port
    wrong = postgres.url.replace(postgres.password, "wrong-pw")
    with pytest.raises(InputError) as e:
        open_store(wrong)
    text = _one_line(e, "password authentication failed", "***")
    assert "wrong-pw" not in text
    with pytest.raises(InputError) as e:
        open_store(f"postgresql://recorder:hunter2@127.0.0.1:{free_port()}/edge")
    assert "hunter2" not in _one_line(e, "127.0.0.1", "***")
    with pytest.raises(InputError) as e:
        open_store(postgres.url.rsplit("/", 1)[0] + "/no_such_db")
    _one_line(e, "no_such_db")
