"""`make demo`'s chain, as `python -m tools demo` runs it: a Mosquitto of its own on a free loopback port, the
daemon on the sample recordings, the monitor printing what reaches the broker, everything stopped at the end."""

import pytest

from conftest import run_cli

pytestmark = pytest.mark.assets


@pytest.mark.broker
def test_the_demo_prints_the_events_the_broker_received(assets, coral_twin):
    r = run_cli("demo", "--audio", assets / "audio", "--model", coral_twin, "--fast", module="tools", timeout=120)
    assert r.code == 0, r.err
    assert "broker: mosquitto on 127.0.0.1:" in r.err
    for line in ("start Cat", "end   Cat", "start Whistle", "status offline"):
        assert line in r.out, (line, r.out)


def test_without_the_recordings_it_is_one_line_and_exit_2(tmp_path):
    r = run_cli("demo", "--audio", tmp_path, module="tools")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
