"""Connecting to the broker: the client library's client as the config sets it up, when the sink tries again after
a failure, and what it says about a connection that did not work.

Back-off: the first try after a drop comes after mqtt.reconnect_min_seconds, then the delay doubles up to
mqtt.reconnect_max_seconds, each one jittered (a fleet that lost its broker must not come back in lockstep). Once
the broker has answered (CONNACK) the next drop starts again from the first delay, unless that connection ended
within STABLE_S: a broker that accepts and then drops the client at once (a message it cannot parse, another client
with the same id) is not hammered at the shortest delay.
"""

from __future__ import annotations

import sys
import time

from ..core.backoff import jitter
from ..core.errors import ConfigError

STABLE_S = 5.0  # a connection that lasted this long after CONNACK resets the back-off when it drops
CONNACK_TIMEOUT_S = 10.0  # the longest wait for the broker's answer to CONNECT (or the keepalive, if shorter)
JITTER = (0.5, 1.0)  # each delay is drawn from [0.5, 1] x the nominal one


class Backoff:
    """next_delay() before each new try; answered() when the broker accepted a connection (CONNACK)."""

    def __init__(self, first_s: float, max_s: float, clock=time.monotonic, stable_s: float = STABLE_S):
        self.first_s = first_s
        self.max_s = max(max_s, first_s)
        self.stable_s = stable_s
        self._clock = clock
        self._nominal = first_s
        self._answered_at: float | None = None

    def answered(self) -> None:
        self._answered_at = self._clock()

    def next_delay(self) -> float:
        """Seconds to wait before the next try; the one after it is twice as long (up to the maximum)."""
        if self._answered_at is not None:
            if self._clock() - self._answered_at >= self.stable_s:
                self._nominal = self.first_s
            self._answered_at = None
        nominal = self._nominal
        self._nominal = min(nominal * 2, self.max_s)
        return nominal * jitter(*JITTER)


def connack_timeout(keepalive_s: float) -> float:
    return min(CONNACK_TIMEOUT_S, float(keepalive_s))


def no_connack(host: str, port: int, waited_s: float, tls: bool) -> str:
    """The broker took the TCP connection (and the TLS handshake, with TLS) but never answered CONNECT."""
    why = "a broker that is overloaded, or not an MQTT broker" if tls else \
        "a TLS port (check mqtt.tls and mqtt.port), or a broker that is overloaded"
    return f"no CONNACK within {waited_s:g} s: {host}:{port} accepted the TCP connection but did not answer " \
           f"MQTT ({why})"


def closed_before_connack(host: str, port: int, tls: bool) -> str:
    """The broker closed the connection instead of answering CONNECT."""
    why = "a TLS port? check mqtt.tls and mqtt.port; or the broker rejected the connection request: its log says " \
          "why" if not tls else "the broker rejected the connection request: its log says why"
    return f"{host}:{port} closed the connection without answering MQTT ({why})"


def describe_error(exc: BaseException, ca_setting: str = "mqtt.ca_file") -> str:
    """One line for a failed connection attempt."""
    ssl = sys.modules.get("ssl")  # not loaded (TLS off): no TLS error is possible, an SSL socket needs it
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); check {ca_setting}"
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running on that port?)"
    return str(exc) or exc.__class__.__name__


def failed_attempt(host: str, port: int, ca_setting: str) -> str:
    """The line for paho's on_connect_fail, which its loop calls inside `except OSError:` without the exception."""
    exc = sys.exc_info()[1]
    return f"cannot reach the broker at {host}:{port}: {describe_error(exc, ca_setting) if exc else 'no answer'}; " \
        "trying again"


def new_client(paho, cfg, client_id: str, password: str | None, reconnect: bool = False):
    """A paho client with the config's protocol, credentials and TLS settings (no callbacks, no will), for the
    daemon's sink and for `edge-audio monitor`. `reconnect`: paho's own loop_start() thread connects again after
    a drop (the monitor); the sink's network thread does that itself, with its back-off."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=paho.MQTTv5 if cfg.protocol == "5" else paho.MQTTv311, reconnect_on_failure=reconnect)
    if cfg.username:
        client.username_pw_set(cfg.username, password)
    if cfg.tls:
        import ssl
        try:
            client.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None,
                           keyfile=cfg.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"mqtt TLS files: {exc}") from None
    return client


def forget_unacknowledged(client) -> None:
    """Drop what the client library would send again by itself on the next connection: the sink sends again what
    still matters (the outbox's head, the retained topics' current values), and never a stale retained value or a
    message it has set aside."""
    drop = getattr(client, "drop_out_messages", None)  # paho-mqtt 2.2
    if drop is not None:
        drop()
        return
    lock, messages = getattr(client, "_out_message_mutex", None), getattr(client, "_out_messages", None)
    if lock is not None and messages is not None:  # paho-mqtt 2.0 and 2.1
        with lock:
            messages.clear()


def is_loopback(host: str) -> bool:
    """A broker on this machine: what goes to it does not cross a network."""
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def connect_kwargs(protocol: str) -> dict:
    """What connect() is given besides the address: with MQTT 5 a clean start and a session that ends with the
    connection (the head and the retained topics are sent again on every connection)."""
    if protocol != "5":
        return {}
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    return {"clean_start": True, "properties": props}
