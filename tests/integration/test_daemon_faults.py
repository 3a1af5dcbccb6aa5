"""Fault injection against a real Mosquitto (with persistence), the real daemon and real audio: the broker frozen
or killed for two keepalive intervals while events happen (long enough for the daemon to take a frozen broker for
gone), the daemon stopped or killed during an outage. After recovery a persistent subscriber must hold every event
produced, in order, each start with its end, with duplicates only where at-least-once delivery allows them, and no
retained state left ON."""

from __future__ import annotations

import json
import random
import time

import pytest

from daemonparts import kitchen_config, segment
from tools.rig.daemon import DaemonProcess
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have, wait_until

pytestmark = [pytest.mark.skipif(not have("mosquitto"), reason="needs Debian's mosquitto (make test installs it)"),
              pytest.mark.slow]

KEEPALIVE_S = 5  # the shortest the config allows
OUTAGE_S = 2.0 * KEEPALIVE_S
EVENTS = "edge-audio/kitchen/events"


def _daemon(tmp_path, port, coral_twin, name="cfg"):
    spool = tmp_path / "state" / "spool.db"
    cfg = kitchen_config(tmp_path / f"{name}.toml", coral_twin, port, {"source": "stdin"},
                         {"spool_file": spool, "keepalive_seconds": KEEPALIVE_S})
    return DaemonProcess(cfg, stdin_pipe=True)


def _count(daemon, pattern: str) -> int:
    import re
    return len(re.findall(pattern, daemon.log))


def _wait_count(daemon, pattern: str, n: int, timeout_s: float = 30.0) -> bool:
    return wait_until(lambda: _count(daemon, pattern) >= n, timeout_s, 0.05)


def distinct(sub: Subscriber) -> int:
    return len({(e["event_id"], e["type"]) for e in sub.events()})


def drain_and_stop(daemon, sub: Subscriber, produced: int, log_line: str = "") -> None:
    """Wait until the subscriber holds `produced` distinct messages, then end the daemon's input (exit 0)."""
    try:
        if log_line:
            assert daemon.wait_log(log_line, 20), daemon.log
        assert sub.wait(lambda s: distinct(s) >= produced, 60), \
            f"subscriber holds {[(e['type'], e['event_id'][:6]) for e in sub.events()]}\n{daemon.log}"
        daemon.proc.stdin.close()
        assert daemon.proc.wait(15) == 0, daemon.log
    finally:
        daemon.kill()
        sub.close()


def check_delivery(sub: Subscriber, produced: int, restarts: int, outages: int) -> dict:
    """Every produced message arrived, in order, starts with their ends; extra copies only of a message that was
    unacknowledged when the connection (or the process) went away."""
    events = sub.events()
    first_seen, order = {}, []
    for e in events:
        key = (e["event_id"], e["type"])
        if key not in first_seen:
            first_seen[key] = e
            order.append(e)
    assert len(order) == produced, [(e["type"], e["event_id"][:6]) for e in events]
    assert [e["type"] for e in order] == ["start", "end"] * (produced // 2)
    assert all(order[i]["event_id"] == order[i + 1]["event_id"] for i in range(0, produced, 2))
    assert [e["start_ts"] for e in order[::2]] == sorted(e["start_ts"] for e in order[::2])
    copies = len(events) - len(order)
    assert copies <= restarts + outages, f"{copies} extra copies for {outages} outage(s) and {restarts} restart(s)"
    return {"received": len(events), "distinct": len(order), "copies": copies,
            "cut_short": sum(bool(e.get("cut_short")) for e in order)}


def retained_states(port: int) -> dict:
    sub = Subscriber(port, topics=("edge-audio/kitchen/state/+",))
    sub.wait(lambda s: s.payloads("/state/cat"), 5)  # retained: delivered right after the subscription
    sub.close()
    return {m.topic.rsplit("/", 1)[1]: m.payload for m in sub.messages}


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_a_broker_outage_of_two_keepalives_loses_nothing(tmp_path, broker, coral_twin, miaow, fault):
    b = broker(persistence=True)
    sub = Subscriber(b.port, topics=(EVENTS,), session="watcher")
    daemon = _daemon(tmp_path, b.port, coral_twin)
    try:
        assert daemon.wait_log(r"MQTT: connected", 20), daemon.log
        daemon.feed(segment(miaow))
        assert sub.wait(lambda s: len(s.events()) >= 2, 30), daemon.log
        b.save()  # the subscriber's session is on the broker's disk, as its autosave would have it
        b.kill() if fault == "killed" else b.pause()
        down = time.monotonic()
        for i in range(3):  # three whole events while the broker is away
            daemon.feed(segment(miaow))
            assert _wait_count(daemon, r"end Cat", 2 + i), daemon.log
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
        b.start() if fault == "killed" else b.resume()
    except BaseException:
        daemon.kill()
        sub.close()
        raise
    drain_and_stop(daemon, sub, 8)
    figures = check_delivery(sub, produced=8, restarts=0, outages=1)
    print(f"\nbroker {fault} {OUTAGE_S:.0f} s: {figures}")
    assert retained_states(b.port).get("cat") == b"OFF"
    assert "Traceback" not in daemon.log


def test_sigterm_during_an_outage_keeps_every_event_for_the_next_run(tmp_path, broker, coral_twin, miaow):
    b = broker(persistence=True)
    sub = Subscriber(b.port, topics=(EVENTS,), session="watcher")
    first = _daemon(tmp_path, b.port, coral_twin)
    try:
        assert first.wait_log(r"MQTT: connected", 20), first.log
        b.save()
        b.kill()
        for i in range(2):
            first.feed(segment(miaow))
            assert _wait_count(first, r"end Cat", i + 1), first.log
        assert first.terminate(timeout_s=5) == 0
    finally:
        first.kill()
    assert "4 event(s) not delivered at shutdown: kept in the spool" in first.log, first.log
    b.start()
    drain_and_stop(_daemon(tmp_path, b.port, coral_twin, "cfg2"), sub, 4)
    figures = check_delivery(sub, produced=4, restarts=1, outages=1)
    print(f"\nSIGTERM during an outage: {figures}")
    assert retained_states(b.port).get("cat") == b"OFF"


def test_sigkill_right_after_an_event_during_an_outage(tmp_path, broker, coral_twin, miaow):
    b = broker(persistence=True)
    sub = Subscriber(b.port, topics=(EVENTS,), session="watcher")
    first = _daemon(tmp_path, b.port, coral_twin)
    delay_ms = random.uniform(0, 50)
    try:
        assert first.wait_log(r"MQTT: connected", 20), first.log
        b.save()
        b.kill()
        first.feed(segment(miaow))  # a whole event
        assert _wait_count(first, r"end Cat", 1), first.log
        first.feed(miaow)  # a Cat that is still sounding when the process dies
        assert _wait_count(first, r"start Cat", 2), first.log
        time.sleep(delay_ms / 1000)
        first.proc.kill()
        first.proc.wait(5)
    finally:
        first.kill()
    b.start()
    drain_and_stop(_daemon(tmp_path, b.port, coral_twin, "cfg2"), sub, 4, r"still open when the previous run stopped")
    figures = check_delivery(sub, produced=4, restarts=1, outages=1)
    print(f"\nSIGKILL {delay_ms:.0f} ms after an event, during an outage: {figures}")
    assert figures["cut_short"] == 1 and json.loads(sub.payloads("/events")[-1])["cut_short"] is True
    assert retained_states(b.port).get("cat") == b"OFF"
