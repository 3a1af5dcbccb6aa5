"""Fault injection against a real Mosquitto (with persistence), the real daemon and real audio: the broker frozen
or killed for two keepalive intervals while events happen (long enough for the daemon to take a frozen broker for
gone), the daemon stopped or killed during an outage. After recovery a persistent subscriber must hold every event
produced, in order, each start with its end, with duplicates only where at-least-once delivery allows them, and no
retained state left ON. Each test runs with one source ([audio], stdin) and with two ([[sources]]: "a" a WAV
replay, "b" stdin), one outbox and spool for both: then all of that holds per source, on each source's topics."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from daemonparts import Layout, SILENCE, segment
from tools.rig.daemon import DaemonProcess
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have, wait_until

pytestmark = [pytest.mark.skipif(not have("mosquitto"), reason="needs Debian's mosquitto (make test installs it)"),
              pytest.mark.slow]

KEEPALIVE_S = 5  # the shortest the config allows
OUTAGE_S = 2.0 * KEEPALIVE_S


@pytest.fixture(params=["one", "two"], ids=["one source", "two sources"])
def layout(request) -> Layout:
    return Layout(request.param)


def _daemon(tmp_path, port, coral_twin, layout, wav=None, realtime=False, name="cfg"):
    spool = tmp_path / "state" / "spool.db"
    cfg = layout.config(tmp_path / f"{name}.toml", coral_twin, port,
                        {"spool_file": spool, "keepalive_seconds": KEEPALIVE_S}, wav, realtime)
    return DaemonProcess(cfg, stdin_pipe=True)


def _count(daemon, pattern: str) -> int:
    import re
    return len(re.findall(pattern, daemon.log))


def _wait_count(daemon, pattern: str, n: int, timeout_s: float = 30.0) -> bool:
    return wait_until(lambda: _count(daemon, pattern) >= n, timeout_s, 0.05)


def distinct(layout: Layout, sub: Subscriber) -> int:
    return len({(e["event_id"], e["type"]) for e in layout.events(sub)})


def drain_and_stop(daemon, sub: Subscriber, layout: Layout, produced: int, log_line: str = "",
                   at_end: int = 0) -> None:
    """Wait until the subscriber holds all but `at_end` of the `produced` distinct messages, then end the daemon's
    input (exit 0; the `at_end` others are the ends of events still open then), then wait for all of them."""
    def holds(n):
        return sub.wait(lambda s: distinct(layout, s) >= n, 60), \
            f"subscriber holds {[(e['source'], e['type'], e['event_id'][:6]) for e in layout.events(sub)]}\n" \
            f"{daemon.log}"
    try:
        if log_line:
            assert daemon.wait_log(log_line, 20), daemon.log
        ok, why = holds(produced - at_end)
        assert ok, why
        daemon.proc.stdin.close()
        assert daemon.proc.wait(15) == 0, daemon.log
        ok, why = holds(produced)
        assert ok, why
    finally:
        daemon.kill()
        sub.close()


def check_delivery(sub: Subscriber, layout: Layout, produced: dict, restarts: int, outages: int) -> dict:
    """Every produced message of each source (`produced`: source -> how many) arrived on that source's topic, in
    order, starts with their ends; extra copies only of a message that was unacknowledged when the connection (or
    the process) went away."""
    events = layout.events(sub)
    figures = {"received": len(events), "copies": 0, "cut_short": {}}
    for source, n in produced.items():
        first_seen, order = {}, []
        for e in events:
            key = (e["event_id"], e["type"])
            if e["source"] == source and key not in first_seen:
                first_seen[key] = e
                order.append(e)
        shown = [(e["type"], e["event_id"][:6]) for e in order]
        assert len(order) == n, (source, shown)
        assert [e["type"] for e in order] == ["start", "end"] * (n // 2), (source, shown)
        assert all(order[i]["event_id"] == order[i + 1]["event_id"] for i in range(0, n, 2)), (source, shown)
        assert [e["start_ts"] for e in order[::2]] == sorted(e["start_ts"] for e in order[::2])
        figures["copies"] += sum(e["source"] == source for e in events) - len(order)
        figures["cut_short"][source] = [i for i, e in enumerate(order) if e.get("cut_short")]
    assert len(events) == sum(e["source"] in produced for e in events), "events of a source no one fed"
    assert figures["copies"] <= restarts + outages, \
        f"{figures['copies']} extra copies for {outages} outage(s) and {restarts} restart(s)"
    return figures


def retained_states(port: int, layout: Layout) -> dict:
    """source -> {label id: payload} of the retained states a fresh subscriber gets."""
    sub = Subscriber(port, topics=(f"{layout.each.base}/state/+",))
    sub.wait(lambda s: len(s.payloads("/state/cat")) >= len(layout.ids), 5)  # retained: right after subscribing
    sub.close()
    states = {}
    for m in sub.messages:
        _, source, kind = layout.device.parse(m.topic, "edge-audio")
        states.setdefault(source, {})[kind.split("/", 1)[1]] = m.payload
    return states


def _all_off(port: int, layout: Layout) -> None:
    states = retained_states(port, layout)
    assert {s: states.get(s, {}).get("cat") for s in layout.ids} == dict.fromkeys(layout.ids, b"OFF"), states


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_a_broker_outage_of_two_keepalives_loses_nothing(tmp_path, broker, coral_twin, miaow, fault, layout):
    """With two sources, "a" replays a Cat at real time from the start (it sounds while the broker is away, or
    about then) while "b" hears four."""
    b = broker(persistence=True)
    sub = Subscriber(b.port, topics=(layout.each.events,), session="watcher")
    a_wav = np.concatenate([SILENCE[:32000], segment(miaow)])
    daemon = _daemon(tmp_path, b.port, coral_twin, layout, a_wav, realtime=True)
    try:
        assert daemon.wait_log(r"MQTT: connected", 20), daemon.log
        daemon.feed(segment(miaow))
        assert sub.wait(lambda s: len(layout.of(s)) >= 2, 30), daemon.log
        b.save()  # the subscriber's session is on the broker's disk, as its autosave would have it
        b.kill() if fault == "killed" else b.pause()
        down = time.monotonic()
        for i in range(3):  # three whole events while the broker is away
            daemon.feed(segment(miaow))
            assert _wait_count(daemon, layout.said("end"), 2 + i), daemon.log
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
        b.start() if fault == "killed" else b.resume()
    except BaseException:
        daemon.kill()
        sub.close()
        raise
    produced = {"a": 2, "b": 8} if layout.two else {"": 8}
    drain_and_stop(daemon, sub, layout, sum(produced.values()))
    figures = check_delivery(sub, layout, produced, restarts=0, outages=1)
    print(f"\nbroker {fault} {OUTAGE_S:.0f} s: {figures}")
    _all_off(b.port, layout)
    assert "Traceback" not in daemon.log


def test_sigterm_during_an_outage_keeps_every_event_for_the_next_run(tmp_path, broker, coral_twin, miaow, layout):
    """With two sources, "a" hears a Cat that still sounds at the SIGTERM (its end is written then, and kept)."""
    b = broker(persistence=True)
    sub = Subscriber(b.port, topics=(layout.each.events,), session="watcher")
    first = _daemon(tmp_path, b.port, coral_twin, layout, miaow)
    try:
        assert first.wait_log(r"MQTT: connected", 20), first.log
        if layout.two:  # a's start is delivered before the outage
            assert sub.wait(lambda s: layout.of(s, "a"), 30), first.log
        b.save()
        b.kill()
        for i in range(2):
            first.feed(segment(miaow))
            assert _wait_count(first, layout.said("end"), i + 1), first.log
        assert first.terminate(timeout_s=5) == 0
    finally:
        first.kill()
    kept = 5 if layout.two else 4
    assert f"{kept} event(s) not delivered at shutdown: kept in the spool" in first.log, first.log
    b.start()
    produced = {"a": 4, "b": 4} if layout.two else {"": 4}
    drain_and_stop(_daemon(tmp_path, b.port, coral_twin, layout, miaow, name="cfg2"), sub, layout,
                   sum(produced.values()), at_end=layout.two)
    figures = check_delivery(sub, layout, produced, restarts=1, outages=1)
    print(f"\nSIGTERM during an outage: {figures}")
    _all_off(b.port, layout)


def test_sigkill_right_after_an_event_during_an_outage(tmp_path, broker, coral_twin, miaow, layout):
    """With two sources, "a" hears a Cat that still sounds at the kill too: the next run ends each open event,
    cut short, on its own source's topic."""
    b = broker(persistence=True)
    sub = Subscriber(b.port, topics=(layout.each.events,), session="watcher")
    first = _daemon(tmp_path, b.port, coral_twin, layout, miaow)
    delay_ms = random.uniform(0, 50)
    try:
        assert first.wait_log(r"MQTT: connected", 20), first.log
        b.save()
        b.kill()
        first.feed(segment(miaow))  # a whole event
        assert _wait_count(first, layout.said("end"), 1), first.log
        first.feed(miaow)  # a Cat that is still sounding when the process dies
        assert _wait_count(first, layout.said("start"), 2), first.log
        assert not layout.two or _wait_count(first, layout.said("start", source="a"), 1), first.log
        time.sleep(delay_ms / 1000)
        first.proc.kill()
        first.proc.wait(5)
    finally:
        first.kill()
    b.start()
    produced = {"a": 4, "b": 4} if layout.two else {"": 4}
    second = _daemon(tmp_path, b.port, coral_twin, layout, miaow, name="cfg2")
    drain_and_stop(second, sub, layout, sum(produced.values()), r"still open when the previous run stopped",
                   at_end=layout.two)
    figures = check_delivery(sub, layout, produced, restarts=1, outages=1)
    print(f"\nSIGKILL {delay_ms:.0f} ms after an event, during an outage: {figures}")
    # the fed source's second Cat ends cut short; with two, a's first Cat too (then a's Cat of the next run)
    assert figures["cut_short"] == ({"a": [1], "b": [3]} if layout.two else {"": [3]})
    assert _count(second, r"still open when the previous run stopped") == len(layout.ids)
    _all_off(b.port, layout)
