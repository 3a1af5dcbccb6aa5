"""The recorder's fleet view over a real SQLite store (Starlette's TestClient): every JSON route and its filters, the
clip's bytes, type and ranges, its spectrogram, /metrics as Prometheus parses it, the live stream, the token, and
markup in a device id or label that only ever travels as JSON text."""

from __future__ import annotations

import base64
import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.webparts import EVIL, EVIL_LABEL, GARDEN, KITCHEN, LiveIngest, fill

from starlette.testclient import TestClient

from edge.app.recorder.store import open_store
from edge.app.recorder.options import Options
from edge.app.recorder.web import make_app

PAGES = ["/", "/device/pi-kitchen", "/events", "/event/ev-clip", "/charts", f"/device/{EVIL}", f"/event/{EVIL}"]
TOKEN = "s3cret token,;="  # characters a cookie must carry quoted


@pytest.fixture
def web(tmp_path, assets):
    store = open_store(f"sqlite:///{tmp_path / 'recorder.db'}")
    filled = fill(store, tmp_path / "clips", assets)
    ingest = LiveIngest()

    def client(token=None):
        return TestClient(make_app(store, ingest, Options(token=token, clips_dir=str(tmp_path / "clips"))))
    yield client, filled, ingest
    store.close()


def test_pages_are_static_html_with_the_security_headers(web):
    client, _, _ = web
    c = client()
    for path in PAGES:
        r = c.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert '<script src="/static/app.js"' in r.text and "<script>" not in r.text  # no inline script
    assert c.get("/static/app.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|eval\(",
                         c.get("/static/app.js").text)
    assert c.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert c.post("/api/devices").status_code == 405  # read-only
    assert c.delete("/event/ev-clip").status_code == 405


def test_devices_show_health_and_marks(web):
    client, filled, _ = web
    rows = {(d["device_id"], d["source"]): d for d in client().get("/api/devices").json()}
    kitchen, garden = rows[(KITCHEN, "")], rows[(GARDEN, "mic2")]
    assert kitchen["online"] is True and kitchen["real_time_factor"] == pytest.approx(0.041)
    assert kitchen["delegate"] == "cpu" and kitchen["delegate_reason"] == "no Edge TPU found"
    # today is UTC's: the kitchen's events that started since midnight (a minute ago is yesterday at 00:00:30)
    midnight = filled.now - filled.now % 86400
    today = sum(e["device_id"] == KITCHEN and e["start_ts"] >= midnight for e in client().get(
        "/api/events", params={"limit": 100}).json())
    assert kitchen["queue_depth"] == 3 and kitchen["events_today"] == today
    assert not kitchen["stale"] and not kitchen["degraded"]
    assert garden["online"] is False and garden["stale"] and garden["degraded"]
    assert "no audio" in garden["problem"]
    assert rows[(EVIL, "")]["device_id"] == EVIL


def test_events_filter_by_device_source_label_time_and_page(web):
    client, filled, _ = web
    c = client()
    ids = lambda query: [e["event_id"] for e in c.get("/api/events" + query).json()]
    assert ids("") == ["ev-evil", "ev-clip", "ev-dog", "ev-bird", "ev-old"]  # newest first
    assert ids(f"?device={KITCHEN}") == ["ev-clip", "ev-dog", "ev-old"]
    assert ids("?source=mic2") == ["ev-bird"]
    assert ids(f"?device={GARDEN}&source=") == []
    assert ids("?label=Dog") == ["ev-dog"]
    assert ids(f"?since={filled.now - 3600}") == ["ev-evil", "ev-clip", "ev-dog"]
    assert ids(f"?until={filled.now - 3600}") == ["ev-bird", "ev-old"]
    assert ids("?limit=2&offset=1") == ["ev-clip", "ev-dog"]
    assert ids("?since=2000-01-01T00:00:00Z&limit=1") == ["ev-evil"]
    assert c.get("/api/events", params={"device": EVIL}).json()[0]["label"] == EVIL_LABEL
    for bad in ("?since=yesterday", "?limit=-1", "?limit=100000", "?offset=x", "?since=nan"):
        r = c.get("/api/events" + bad)
        assert r.status_code == 400 and r.json()["error"], bad


def test_one_event_labels_counts_and_ids(web):
    client, filled, _ = web
    c = client()
    event = c.get("/api/event/ev-clip").json()
    assert event["label"] == "Cat" and event["has_clip"] and event["duration_s"] == pytest.approx(2.0)
    assert event["peak_score"] == pytest.approx(0.91) and event["mean_score"] == pytest.approx(0.62)
    assert event["end"]["clip"]["status"] == "kept"
    assert c.get("/api/event/ev-old").json()["cut_short"] is True
    assert c.get("/api/event/nope").status_code == 404
    assert c.get("/api/labels").json() == sorted([EVIL_LABEL, "Bird", "Cat", "Dog", "Speech"])
    assert c.get("/api/device_ids").json() == sorted([EVIL, GARDEN, KITCHEN])
    day = c.get("/api/counts?bucket=day").json()
    assert day["bucket"] == "day" and sum(r["count"] for r in day["rows"]) == 5
    hour = c.get("/api/counts", params={"bucket": "hour", "device": KITCHEN}).json()
    assert {r["label"] for r in hour["rows"]} == {"Cat", "Dog"}  # the two-day-old Speech is before the default span
    assert all(r["bucket_ts"] % 3600 == 0 for r in hour["rows"])
    since = c.get("/api/counts", params={"bucket": "day", "since": filled.now - 10 * 86400, "label": "Speech"})
    assert [r["count"] for r in since.json()["rows"]] == [1]
    assert c.get("/api/counts?bucket=week").status_code == 400


def test_the_clip_its_ranges_and_its_spectrogram(web):
    client, filled, _ = web
    c = client()
    r = c.get("/clip/ev-clip")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
    assert r.content == filled.clip_bytes
    part = c.get("/clip/ev-clip", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == filled.clip_bytes[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(filled.clip_bytes)}"
    png = c.get("/clip/ev-clip.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    cached = filled.clip_path.with_name(filled.clip_path.name + ".png")
    assert cached.read_bytes() == png.content  # drawn once, kept next to the clip
    assert c.get("/clip/ev-clip.png").content == png.content
    for missing in ("/clip/ev-dog", "/clip/nope.png", "/clip/../recorder.db", "/clip/%2e%2e%2frecorder.db",
                    f"/clip/{filled.clip_path}"):
        assert c.get(missing).status_code == 404, missing


def test_metrics_parse_and_hold_every_device(web):
    client, _, _ = web
    text = client().get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(text.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    kitchen = (("device", KITCHEN), ("source", ""))
    garden = (("device", GARDEN), ("source", "mic2"))
    assert samples[("edge_audio_online", kitchen)] == 1.0
    assert samples[("edge_audio_online", garden)] == 0.0
    assert samples[("edge_audio_real_time_factor", kitchen)] == pytest.approx(0.041)
    assert samples[("edge_audio_inference_p50_ms", kitchen)] == pytest.approx(4.25)
    assert samples[("edge_audio_queue_depth", kitchen)] == 3.0
    assert samples[("edge_audio_events_total", kitchen)] == 7.0
    assert samples[("edge_audio_stale", garden)] == 1.0
    assert samples[("edge_audio_delegate_info", tuple(sorted((*garden, ("delegate", "edgetpu"),
                                                               ("reason", "Edge TPU found")))))] == 1.0
    assert samples[("edge_audio_last_metrics_timestamp_seconds", kitchen)] > 0
    assert samples[("edge_audio_online", (("device", EVIL), ("source", "")))] == 1.0  # escaped, parsed back
    assert samples[("recorder_messages_received_total", ())] == 12.0
    assert samples[("recorder_rows_stored_total", ())] == 9.0
    assert samples[("recorder_rejected_total", (("reason", "malformed_json"),))] == 2.0


def test_a_token_guards_every_route(web):
    client, _, _ = web
    c = client(TOKEN)
    routes = [*PAGES, "/api/devices", "/api/events", "/api/event/ev-clip", "/api/counts", "/api/labels",
              "/api/device_ids", "/clip/ev-clip", "/clip/ev-clip.png", "/metrics", "/static/app.js",
              f"/api/live/{KITCHEN}"]
    basic = "Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    for path in routes:
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        if "/api/live/" not in path:
            assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
            assert c.get(path, headers={"Authorization": basic}).status_code == 200, path
    assert c.get("/", headers={"Authorization": "Basic " + base64.b64encode(b"x:bad").decode()}).status_code == 401
    assert c.get("/", headers={"Authorization": "Basic !!!"}).status_code == 401
    browser = client(TOKEN)
    assert browser.get("/?token=nope", follow_redirects=False).status_code == 401
    r = browser.get(f"/events?label=Cat&token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/events?label=Cat"  # the token leaves the address
    assert "httponly" in r.headers["set-cookie"].lower()
    for path in ("/", "/api/devices", "/clip/ev-clip", "/metrics"):
        assert browser.get(path).status_code == 200, path  # the cookie
    stranger = client(TOKEN)
    stranger.cookies.set("token", "wrong")
    assert stranger.get("/").status_code == 401


def test_markup_in_an_id_is_json_text_and_never_in_a_page(web):
    client, _, _ = web
    c = client()
    assert EVIL in c.get("/api/device_ids").json()
    raw = c.get("/api/events", params={"device": EVIL}).text
    assert json.loads(raw)[0]["device_id"] == EVIL
    assert c.get("/api/devices").headers["content-type"] == "application/json"
    for path in PAGES + [f"/device/{EVIL}?x={EVIL}", "/static/app.js"]:
        body = c.get(path).text
        for needle in (EVIL, EVIL_LABEL, "onerror=", "alert("):
            assert needle not in body, (path, needle)


def test_the_live_stream_sends_the_latest_then_what_the_ingest_hands_it(web):
    client, _, ingest = web
    c = client()
    with c.stream("GET", f"/api/live/{KITCHEN}") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        assert first["kind"] == "latest" and first["payload"][""]["real_time_factor"] == pytest.approx(0.041)
        assert ingest.listeners(KITCHEN) == 1
        ingest.publish(KITCHEN, "", "top", "Cat")
        ingest.publish(KITCHEN, "", "status", "offline")
        got = [json.loads(next(line for line in lines if line.startswith("data: "))[6:]) for _ in range(2)]
        assert [(g["kind"], g["payload"]) for g in got] == [("top", "Cat"), ("status", "offline")]
    assert ingest.unsubscribed == 1 and ingest.listeners(KITCHEN) == 0
