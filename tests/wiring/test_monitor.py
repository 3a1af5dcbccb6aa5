"""`edge-audio monitor`: its client comes from the sink's factory (protocol, credentials, TLS with a client
certificate), event payloads are read with Event.from_dict, and anything else on the events topic is printed as it
came."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import edge.sinks.mqtt as mqtt_sink
from conftest import assert_one_line_error, run_cli
from edge.app import monitor
from edge.core.errors import InputError

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "golden" / "event_v1.json").read_text())


def _args(**given) -> SimpleNamespace:
    flags = dict(host="127.0.0.1", port=1883, prefix="edge-audio", device=None, username=None, password_file=None,
                 tls=False, ca_file=None, cert_file=None, key_file=None, protocol="5", metrics=False, json=False,
                 count=0, timeout=0.0)
    return SimpleNamespace(**{**flags, **given})


def test_the_monitor_builds_its_client_with_the_sinks_factory(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(mqtt_sink, "new_client", lambda paho, cfg, client_id, password, reconnect=False:
                        made.append((cfg, password, reconnect)) or "client")
    files = {name: tmp_path / name for name in ("ca.crt", "me.crt", "me.key", "password")}
    for path in files.values():
        path.write_text("s3cret\n")
    assert monitor.monitor_client(_args(username="watcher", password_file=str(files["password"]),
                                        ca_file=str(files["ca.crt"]), cert_file=str(files["me.crt"]),
                                        key_file=str(files["me.key"]), protocol="3.1.1")) == "client"
    [(cfg, password, reconnect)] = made
    assert (cfg.tls, cfg.ca_file, cfg.cert_file, cfg.key_file) == (True, str(files["ca.crt"]), str(files["me.crt"]),
                                                                  str(files["me.key"]))
    assert (cfg.protocol, cfg.username, password, reconnect) == ("3.1.1", "watcher", "s3cret", True)
    monitor.monitor_client(_args())
    assert (made[-1][0].tls, made[-1][0].protocol, made[-1][1]) == (False, "5", None)


def test_the_real_factory_gives_the_protocol_asked_for():
    paho = pytest.importorskip("paho.mqtt.client")
    assert monitor.monitor_client(_args(protocol="3.1.1"))._protocol == paho.MQTTv311
    assert monitor.monitor_client(_args())._protocol == paho.MQTTv5


def test_tls_flags_that_cannot_work_are_one_line(tmp_path):
    (tmp_path / "me.crt").write_text("")
    for args, words in ((_args(cert_file=str(tmp_path / "me.crt")), "--cert-file and --key-file go together"),
                        (_args(ca_file=str(tmp_path / "nope.crt")), "--ca-file"),
                        (_args(cert_file=str(tmp_path / "me.crt"), key_file=str(tmp_path / "x")), "--key-file")):
        with pytest.raises(InputError, match=words):
            monitor.monitor_client(args)
    r = run_cli("monitor", "--ca-file", str(tmp_path / "nope.crt"), "--timeout", "1")
    assert_one_line_error(r, 2, "--ca-file", "not found")
    r = run_cli("monitor", "--protocol", "4", "--timeout", "1")
    assert_one_line_error(r, 2, "--protocol")


def test_event_lines_come_from_the_event_and_anything_else_is_printed_as_it_came():
    watch = monitor.Watch(_args(), [])
    end = watch.line("edge-audio/kitchen/living-room/events", json.dumps(GOLDEN), False)
    assert end == "2025-11-30T10:53:23.750Z  kitchen/living-room end   Cat peak 0.81 for 3.5 s"  # its source too
    start = dict(GOLDEN, type="start", end_ts=None, end_time=None, source="")  # a config with [audio] alone
    assert watch.line("edge-audio/kitchen/events", json.dumps(start), False) == \
        "2025-11-30T10:53:20.250Z  kitchen      start Cat peak 0.81"
    cut = watch.line("edge-audio/kitchen/events", json.dumps(dict(GOLDEN, cut_short=True)), False)
    assert cut.endswith("for 3.5 s (cut short)")
    withheld = watch.line("edge-audio/kitchen/events", json.dumps(dict(GOLDEN, clip={"status": "withheld: speech"})),
                          False)
    assert withheld.endswith("for 3.5 s, clip withheld: speech")
    assert watch.line("edge-audio/kitchen/events", "not json", False) == f"{'':24}  kitchen      events not json"
    assert watch.line("edge-audio/kitchen/state/cat", "ON", True) == f"{'':24}  kitchen      state cat = ON"
    assert watch.line("edge-audio/kitchen/state/events", "ON", True) == f"{'':24}  kitchen      state events = ON"
    assert watch.line("edge-audio/pi/porch/state/cat", "OFF", True) == f"{'':24}  pi/porch     state cat = OFF"
    assert watch.line("edge-audio/pi/porch/status", "offline", True) == f"{'':24}  pi/porch     status offline"
    assert watch.line("edge-audio/pi/porch/events", "not json", False) == f"{'':24}  pi/porch     events not json"
    other_prefix = monitor.Watch(_args(prefix="home/sound"), [])
    assert other_prefix.line("home/sound/pi/porch/state/cat", "ON", True) == f"{'':24}  pi/porch     state cat = ON"
    as_json = json.loads(monitor.Watch(_args(json=True), []).line("edge-audio/kitchen/events", json.dumps(GOLDEN),
                                                                   True))
    assert as_json == {"topic": "edge-audio/kitchen/events", "retained": True, "payload": GOLDEN}


def test_the_monitor_hears_both_layouts():
    """A device's own topics (a config with [audio] alone) and each named source's, metrics when asked."""
    from edge.sinks.topics import Topics
    assert Topics("edge-audio", "+").subscriptions() == [
        "edge-audio/+/events", "edge-audio/+/status", "edge-audio/+/state/+",
        "edge-audio/+/+/events", "edge-audio/+/+/status", "edge-audio/+/+/state/+"]
    assert Topics("edge-audio", "pi").subscriptions(metrics=True)[-1] == "edge-audio/pi/+/metrics"


def test_the_monitor_prints_an_event_from_a_broker_over_mqtt_3_1_1(broker):
    paho = pytest.importorskip("paho.mqtt.client")
    b = broker()
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", b.port)
    publisher.loop_start()
    # a named source's event on its own topic, and one of a config with [audio] alone on the device's
    publisher.publish("edge-audio/kitchen/living-room/events", json.dumps(GOLDEN), qos=1,
                      retain=True).wait_for_publish(5)
    start = dict(GOLDEN, type="start", end_ts=None, end_time=None, source="", device_id="barn")
    publisher.publish("edge-audio/barn/events", json.dumps(start), qos=1, retain=True).wait_for_publish(5)
    publisher.loop_stop()
    publisher.disconnect()
    r = run_cli("monitor", "--port", str(b.port), "--protocol", "3.1.1", "--count", "2", "--timeout", "20")
    assert r.code == 0, r.err
    assert sorted(r.out.splitlines()) == ["2025-11-30T10:53:20.250Z  barn         start Cat peak 0.81",
                                          "2025-11-30T10:53:23.750Z  kitchen/living-room end   Cat peak 0.81 for 3.5 s"]


def test_a_password_file_that_is_a_fifo_or_a_device_is_one_line(tmp_path):
    import os
    fifo = tmp_path / "pw"
    os.mkfifo(fifo)
    for path, needle in ((fifo, "named pipe (FIFO)"), ("/dev/zero", "character device")):
        r = run_cli("monitor", "--host", "127.0.0.1", "--username", "u", "--password-file", path, timeout=30)
        assert_one_line_error(r, 2, needle, "not a password file")
