"""Coming back after a broker outage, on a real Mosquitto: with 120 watched labels the retained states a fresh
subscriber sees after each reconnect are the sink's current ones, whatever changed during the outage (a crash, a
listener that never answers CONNECT, a clean shutdown), and Home Assistant's configs are all there; and a backlog
produced during an outage delivered in order once the broker is back (how soon: `make bench-recovery`). The
retained states hold per source too: the same test with two sources (a and b) watching the same 120 labels, whose
states differ."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from edge.config import parse_config
from tools.rig.daemon import daemon_config_text
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have, wait_until

pytestmark = pytest.mark.skipif(not have("mosquitto"), reason="needs Debian's mosquitto (make test installs it)")

LABELS = [f"Sound {i:03d}" for i in range(120)]
KEEPALIVE_S = 5  # the shortest the config allows: a CONNECT that is never answered is given up after 5 s


class SilentListener:
    """Takes TCP connections on a port and never says a word (what a client sees of a frozen or overloaded
    broker, or of a TLS port that waits for a handshake)."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        """Stops listening for good: a close alone leaves a thread blocked in accept() holding the socket, which
        then takes the client's next connection instead of the broker started after it."""
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way
        self.thread.join(5)
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def _sink(port: int, device: str, watched, **mqtt):
    from edge.sinks.mqtt import MqttSink
    cfg = parse_config(daemon_config_text(device={"id": device}, mqtt={
        "host": "127.0.0.1", "port": port, "spool_file": "none", "keepalive_seconds": KEEPALIVE_S, **mqtt})).mqtt
    sink = MqttSink(cfg, device, watched=watched)
    sink.start()
    return sink


def _broker_holds(port: int, sink, on: dict[tuple[str, str], bool]) -> None:
    """Once the sink has sent everything on its new connection, a fresh subscriber sees every source's every
    label's current state (`on`: (source, label) -> ON), and every one's Home Assistant config."""
    assert wait_until(lambda: sink.connected and sink.retained.settled(), 30), sink.health()
    states = f"edge-audio/{sink.device_id}/state/+", f"edge-audio/{sink.device_id}/+/state/+"
    late = Subscriber(port, topics=(*states, "homeassistant/binary_sensor/+/+/config"))
    try:
        assert late.wait(lambda s: len(s.retained()) >= 2 * len(on), 10), len(late.retained())
        retained = late.retained()
    finally:
        late.close()
    held = {t: p for t, p in retained.items() if "/state/" in t}
    assert held == {sink.sources.topics(source).state(label): b"ON" if is_on else b"OFF"
                    for (source, label), is_on in on.items()}
    assert sum(t.startswith("homeassistant/") for t in retained) == len(on)


def _changes_during_the_outage(sink, on: dict[tuple[str, str], bool], outage: int) -> None:
    """Three rounds of changes: a quarter of each source's labels flip in each (another quarter on each source),
    some of them back again."""
    sources = sorted({source for source, _ in on})
    for step in range(3):
        for (source, label), is_on in on.items():
            if (LABELS.index(label) + step + outage + sources.index(source)) % 4 == 0:
                on[source, label] = not is_on
                sink.set_state(label, not is_on, source=source)
        sink.flush()


@pytest.mark.parametrize("sources", [[""], ["a", "b"]], ids=["one source", "two sources"])
def test_retained_states_equal_the_current_ones_after_every_reconnect_with_120_labels(broker, caplog, sources):
    b = broker()
    watched = LABELS if sources == [""] else dict.fromkeys(sources, LABELS)
    sink = _sink(b.port, "many", watched, reconnect_min_seconds=0.2, reconnect_max_seconds=1.0)
    on = {(source, label): False for source in sources for label in LABELS}
    try:
        _broker_holds(b.port, sink, on)
        for outage, how in enumerate(("crash", "never answers CONNECT", "clean shutdown")):
            connects = sink.connects
            if how == "clean shutdown":
                b.stop()
            else:
                b.kill()
            assert wait_until(lambda: not sink.connected, 10)
            _changes_during_the_outage(sink, on, outage)
            if how == "never answers CONNECT":
                silent = SilentListener(b.port)
                assert wait_until(lambda: "no CONNACK within" in caplog.text, 3 * KEEPALIVE_S)
                _changes_during_the_outage(sink, on, outage + 1)
                silent.close()
            b.start()
            assert wait_until(lambda n=connects: sink.connects > n, 15), how
            _broker_holds(b.port, sink, on)
        h = sink.health()
    finally:
        sink.stop(2.0)
    assert (h["dropped_messages"], h["refused_messages"], h["reconnects"]) == (0, 0, 3)
    [line] = {r.getMessage() for r in caplog.records if "no CONNACK" in r.getMessage()}
    assert f"no CONNACK within {KEEPALIVE_S} s: 127.0.0.1:{b.port} accepted the TCP connection but did not " \
           "answer MQTT (a TLS port" in line


def test_after_an_outage_the_backlog_is_delivered_in_order_once_the_broker_is_back(tmp_path):
    """Events produced all through an outage, with the default back-off, reach a persistent subscriber in order
    once the broker is back (how long that takes is `make bench-recovery`'s figure, measured there)."""
    from tools.bench.recovery import one_round
    from tools.rig.broker import Broker
    b = Broker(tmp_path / "broker", persistence=True)
    try:
        r = one_round(b, 4.0, 8, 0)
    finally:
        b.stop()
    assert r["received"] == [f"backlog-{i}" for i in range(8)]


def test_a_plain_connection_to_a_tls_port_is_told_what_happened(tmp_path, broker, caplog):
    from tools.rig.broker import make_certs
    if not have("openssl"):
        pytest.skip("needs openssl (make test installs it)")
    b = broker(tls=make_certs(tmp_path / "pki"))
    sink = _sink(b.port, "plain", [], homeassistant=False, reconnect_min_seconds=0.2, reconnect_max_seconds=1.0)
    try:
        assert wait_until(lambda: sink.health()["mqtt_error"], 10)
        time.sleep(1.5)  # a few more tries: still the same one line
        h = sink.health()
    finally:
        sink.stop(1.0)
    assert h["mqtt_error"] == f"127.0.0.1:{b.port} closed the connection without answering MQTT (a TLS port? check " \
        "mqtt.tls and mqtt.port; or the broker rejected the connection request: its log says why)"
    assert not h["mqtt_connected"] and "no CONNACK" not in caplog.text
    assert len([r for r in caplog.records if "closed the connection" in r.getMessage()]) == 1
