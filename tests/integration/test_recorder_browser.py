"""The recorder's pages in a real browser: Debian's headless Chromium through Selenium and Debian's chromedriver (no
browser download), the app on a real uvicorn on a loopback port, a real SQLite store holding a FLAC clip cut from
a real recording. The fleet page, the timeline, one event (its audio element loads the clip and reports its
duration, its spectrogram loads), the charts and the live view (its top class follows what the ingest hands it);
markup in a device id shows as text. Screenshots of each page go to out/screenshots/ (artifacts)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.webparts import (
    CLIP_SECONDS,
    EVIL,
    EVIL_LABEL,
    GARDEN,
    KITCHEN,
    LiveIngest,
    fill,
)
from tools.rig.ports import free_port, have, wait_until

import uvicorn  # the dev install has the recorder extra and Selenium: a missing one is a failure, not a skip

from edge.app.recorder.options import Options
from edge.app.recorder.store import open_store
from edge.app.recorder.web import make_app

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "screenshots"
WAIT_S = 30.0  # generous: a loaded CI machine; nothing here is a timed assertion


@pytest.fixture
def site(tmp_path, assets):
    """The app on uvicorn in a thread: (base URL, the fake ingest, what the store holds)."""
    store = open_store(f"sqlite:///{tmp_path / 'recorder.db'}")
    filled = fill(store, tmp_path / "clips", assets)
    ingest = LiveIngest()
    with served(store, ingest, tmp_path / "clips") as url:
        yield url, ingest, filled
    store.close()


@contextlib.contextmanager
def served(store, ingest, clips: Path):
    """The app on a real uvicorn in a thread, on a free loopback port: its base URL; stopped after the block."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(store, ingest, Options(clips_dir=str(clips))), host="127.0.0.1",
                                           port=port, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, WAIT_S), "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def browser():
    if not have("/usr/bin/chromium", "/usr/bin/chromedriver"):
        pytest.fail("Debian's chromium and chromium-driver are not installed (make sysdeps installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def until(driver, script: str, what: str):
    """Wait (WebDriverWait, no fixed sleep) until `script` returns something truthy; that value."""
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(lambda d: d.execute_script(script),
                                                                    f"waiting for {what}")


def text(driver, css: str) -> str:
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                                 css)


def no_page_errors(driver) -> None:
    """Nothing the page did broke a rule (a CSP violation, a script error) as the browser's console tells."""
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and "favicon.ico" not in e["message"]]
    assert not severe, severe


def test_the_fleet_the_timeline_an_event_and_the_charts(site, browser):
    base, _, filled = site
    browser.get(base + "/")
    until(browser, "return document.querySelectorAll('#fleet tbody tr').length === 3", "three fleet rows")
    rows = browser.execute_script("return [...document.querySelectorAll('#fleet tbody tr')].map(r => "
                                  "[r.className, [...r.cells].map(c => c.textContent)])")
    by_device = {(cells[0], cells[1]): (cls, cells) for cls, cells in rows}
    cls, cells = by_device[(GARDEN, "mic2")]
    assert "degraded" in cls and cells[-1].startswith("DEGRADED") and "no audio" in cells[-1]
    assert "offline since" in cells[2] and "edgetpu (Edge TPU found)" == cells[3]
    cls, cells = by_device[(KITCHEN, "(device)")]
    assert "ok" in cls.split() and cells[2].startswith("online since") and cells[4] == "0.041"
    assert (EVIL, "(device)") in by_device  # the markup is the cell's text
    assert browser.execute_script("return document.querySelectorAll('main img, main script').length") == 0
    browser.save_screenshot(str(SHOTS / "fleet.png"))
    no_page_errors(browser)

    browser.get(base + "/events")
    until(browser, "return document.querySelectorAll('#events tbody tr').length === 5", "five events")
    assert EVIL_LABEL in [r[3] for r in browser.execute_script(
        "return [...document.querySelectorAll('#events tbody tr')].map(r => [...r.cells].map(c => c.textContent))")]
    browser.save_screenshot(str(SHOTS / "timeline.png"))
    browser.get(base + f"/events?device={KITCHEN}&label=Dog")
    until(browser, "return document.querySelectorAll('#events tbody tr').length === 1", "the one filtered event")
    no_page_errors(browser)

    browser.get(base + f"/event/{filled.clip_event}")
    duration = until(browser, "const a = document.getElementById('player'); return a && a.readyState >= 1 && "
                              "isFinite(a.duration) && a.duration > 0 ? a.duration : null", "the clip's duration")
    assert duration == pytest.approx(CLIP_SECONDS, abs=0.02)
    until(browser, "const i = document.getElementById('spectrogram'); return i.complete && i.naturalWidth > 0",
          "the spectrogram")
    assert text(browser, "#label") == "Cat"
    browser.execute_script("document.getElementById('player').currentTime = 1.0")  # a seek: a Range request
    until(browser, "const a = document.getElementById('player'); return a.readyState >= 2 && !a.error",
          "the clip's data after a seek")
    browser.save_screenshot(str(SHOTS / "event.png"))
    no_page_errors(browser)

    browser.get(base + "/charts")
    bars = until(browser, "const n = document.querySelectorAll('#chart-hour rect.bar').length; return n || null",
                 "the hourly bars")
    assert bars >= 2 and browser.execute_script("return document.querySelectorAll('#chart-day rect.bar').length") >= 5
    legend = browser.execute_script("return [...document.querySelectorAll('#legend .legend-item')]"
                                    ".map(e => e.textContent)")
    assert EVIL_LABEL in legend
    browser.set_window_size(1400, 1500)  # both charts and the legend in the picture
    browser.save_screenshot(str(SHOTS / "charts.png"))
    no_page_errors(browser)


def test_the_live_view_follows_the_ingest(site, browser):
    base, ingest, _ = site
    browser.get(base + f"/device/{KITCHEN}")
    until(browser, "return document.getElementById('connection').textContent === 'live'", "the live stream")
    assert wait_until(lambda: ingest.listeners(KITCHEN) == 1, WAIT_S)
    until(browser, "return document.querySelectorAll('#metrics tbody tr').length === 1", "the latest metrics")
    assert text(browser, "#level") == "-31.5 dBFS"
    for label in ("Dog", "Speech"):
        ingest.publish(KITCHEN, "", "top", label)
        until(browser, f"return document.getElementById('top').textContent === {label!r}", f"top class {label}")
    ingest.publish(KITCHEN, "", "status", "offline")
    until(browser, "return document.getElementById('status').textContent === 'offline'", "the status")
    ingest.publish(KITCHEN, "", "metrics", {"level_dbfs": -12.0, "real_time_factor": 0.5, "events": 9})
    until(browser, "return document.getElementById('level').textContent === '-12.0 dBFS'", "the new level")
    browser.save_screenshot(str(SHOTS / "live.png"))
    no_page_errors(browser)
    browser.get("about:blank")  # the page leaves: its stream closes and the ingest gets its queue back
    assert wait_until(lambda: ingest.listeners(KITCHEN) == 0, WAIT_S)


def test_a_device_id_with_markup_shows_as_text(site, browser):
    base, ingest, _ = site
    browser.get(base + "/device/" + quote(EVIL, safe=""))
    until(browser, "return document.getElementById('connection').textContent === 'live'", "the live stream")
    assert text(browser, "#device") == EVIL
    ingest.publish(EVIL, "", "top", EVIL_LABEL)
    until(browser, f"return document.getElementById('top').textContent === {EVIL_LABEL!r}", "the markup label")
    until(browser, "return document.querySelectorAll('#events tbody tr').length === 1", "its event")
    assert browser.execute_script("return document.querySelectorAll('main img, main script, main b').length") == 0
    assert browser.execute_script("return window.__xss === undefined")
    browser.save_screenshot(str(SHOTS / "markup-device.png"))
    no_page_errors(browser)


def test_the_live_view_through_a_real_broker_and_the_real_ingest(tmp_path, assets, broker, browser):
    """A device's top class and event go through Mosquitto into the recorder's own Ingest, which stores the event
    and hands both to the live view: the page's top class changes, and the event shows in its list."""
    import paho.mqtt.client as mqtt

    from edge.app.recorder.ingest import Ingest
    from tests.webparts import event_pair
    b = broker()
    store = open_store(f"sqlite:///{tmp_path / 'recorder.db'}")
    fill(store, tmp_path / "clips", assets)
    ingest = Ingest(store, Options(host="127.0.0.1", port=b.port, clips_dir=str(tmp_path / "clips"),
                                   client_id="recorder-web-test"))
    ingest.start()
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pi-kitchen-test")
    device.connect("127.0.0.1", b.port)
    device.loop_start()
    try:
        with served(store, ingest, tmp_path / "clips") as url:
            assert wait_until(lambda: ingest.connected, WAIT_S)
            browser.get(f"{url}/device/{KITCHEN}")
            until(browser, "return document.getElementById('connection').textContent === 'live'", "the live stream")
            # the stream subscribes to the ingest before its headers go out: 'live' means the queue is there
            for label in ("Whistle", "Meow"):
                device.publish(f"edge-audio/{KITCHEN}/top", label, qos=1, retain=True).wait_for_publish(WAIT_S)
                until(browser, f"return document.getElementById('top').textContent === {label!r}", f"top {label}")
            start, _ = event_pair(KITCHEN, "", "Whistle", time.time(), 1.0, "ev-live")
            device.publish(f"edge-audio/{KITCHEN}/events", json.dumps(start), qos=1).wait_for_publish(WAIT_S)
            until(browser, "return [...document.querySelectorAll('#events tbody tr')].some(r => "
                           "r.cells[2].textContent === 'Whistle')", "the stored event in the list")
            assert store.event("ev-live")["label"] == "Whistle"
            browser.save_screenshot(str(SHOTS / "live-broker.png"))
            no_page_errors(browser)
    finally:
        device.loop_stop()
        device.disconnect()
        ingest.stop()
        store.close()


def test_the_live_top_class_changes_while_a_daemon_plays_audio(tmp_path, assets, broker, browser, miaow):
    """A real daemon plays a recording at real time (a cat, then an alarm clock) into a real Mosquitto; the
    recorder's Ingest hands its top class to the live view, which shows one class and then another."""
    import numpy as np
    import soundfile

    from edge.app.recorder.ingest import Ingest
    from edge.core.wavfile import write_wav
    from tools.rig.daemon import DaemonProcess, write_daemon_config
    alarm, _ = soundfile.read(sorted((assets / "devset" / "clips").glob("esc50_clock_alarm_*"))[0], dtype="int16")
    write_wav(tmp_path / "scene.wav", np.concatenate([miaow, alarm, alarm]), 16000)
    b = broker()
    store = open_store(f"sqlite:///{tmp_path / 'recorder.db'}")
    ingest = Ingest(store, Options(host="127.0.0.1", port=b.port, clips_dir=str(tmp_path / "clips"),
                                   client_id="recorder-live-daemon"))
    ingest.start()
    daemon = None
    try:
        with served(store, ingest, tmp_path / "clips") as url:
            assert wait_until(lambda: ingest.connected, WAIT_S)
            browser.get(f"{url}/device/porch")
            until(browser, "return document.getElementById('connection').textContent === 'live'", "the live stream")
            cfg = write_daemon_config(
                tmp_path / "porch.toml", device={"id": "porch"}, model={"path": assets / "models" / "coral" /
                                                                                "yamnet_spectra_in.tflite"},
                audio={"source": "wav", "file": tmp_path / "scene.wav", "realtime": True},
                mqtt={"host": "127.0.0.1", "port": b.port, "top_hold_seconds": 0, "spool_file": "none"},
                metrics={"interval_seconds": 1})
            daemon = DaemonProcess(cfg)
            tops = set()

            def seen() -> bool:
                top = text(browser, "#top")
                if top and top not in ("—", "none"):
                    tops.add(top)
                return len(tops) >= 2
            assert wait_until(seen, 60, 0.1), (tops, daemon.log_tail(5))
            # the level as the device's metrics say it, once a second
            assert wait_until(lambda: (text(browser, "#level") or "").endswith(" dBFS"), 30, 0.1)
            browser.save_screenshot(str(SHOTS / "live-daemon.png"))
            no_page_errors(browser)
    finally:
        if daemon is not None:
            daemon.kill()
        ingest.stop()
        store.close()
