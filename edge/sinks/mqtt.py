"""MQTT publisher: one network thread owns the paho client; the audio loop only appends to bounded queues.

Topic layout in topics.py; events go through the ordered outbox (outbox.py), one in flight at a time so order
holds; Home Assistant discovery (homeassistant.py) is announced on connect and again when Home Assistant says
it came back online.

The network thread sleeps until the broker sends something, the audio loop has queued work or a keepalive is due
(netloop.py): an idle daemon wakes a few times per keepalive interval.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time

from ..config import MqttConfig
from ..core.backoff import jitter
from ..core.errors import ConfigError
from ..core.events import Event
from . import homeassistant
from .base import Sink
from .netloop import NetworkLoop, import_paho
from .outbox import Message, Outbox
from .topics import Topics

log = logging.getLogger("edge.mqtt")


class MqttSink(Sink):
    """publish_event / set_state / publish_scores / publish_metrics from the audio loop, then flush() before it
    sleeps (one wake-up of the network thread for all of them); start() / stop()."""

    def __init__(self, cfg: MqttConfig, device_id: str, password: str | None = None, watched: list[str] = (),
                 model: str = "", client_factory=None, spool: str | None = None, board: str = "",
                 clock=time.monotonic):
        try:
            paho = import_paho(tls=cfg.tls)  # TLS off: no ssl, no OpenSSL in the process
        except ImportError:
            raise ConfigError("mqtt.enabled needs paho-mqtt: pip install 'edge-audio[device]'") from None
        self._paho = paho
        self.cfg = cfg
        self.device_id = device_id
        self.topics = Topics(cfg.prefix, device_id)
        self.base = self.topics.base
        self.status_topic = self.topics.status
        self.watched = list(watched)
        self.model = model
        self.board = board
        self.top = homeassistant.HeldTop(cfg.top_hold_seconds, clock)  # what the retained top topic shows
        self.outbox = Outbox(cfg.outbox_max, cfg.outbox_policy, spool)
        self._direct: collections.deque[Message] = collections.deque(maxlen=256)  # QoS 0 extras: newest win
        # retained topics, re-sent on every connect: every watched label starts OFF (an event left open by a
        # previous run is ended, cut short, by the daemon as it starts)
        self._retained: dict[str, str] = {self.topics.state(label): "OFF" for label in self.watched}
        self._lock = threading.Lock()
        self._queued = False  # something waits for the next flush()
        self._stop = threading.Event()
        self._connected = False
        self._inflight: tuple[int, Message] | None = None
        self._announce = False
        self.delivered = 0
        self.dropped_other = 0
        self.refused = 0
        self.reconnects = 0
        self.connects = 0
        self.last_error = ""
        self.failed = ""  # set when the network thread died: the daemon stops and systemd restarts it
        self._thread: threading.Thread | None = None
        self._awaiting_connack = False
        self.client = (client_factory or self._make_client)(password)
        self.net = NetworkLoop(self.client, cfg.keepalive_seconds, paho.MQTT_ERR_SUCCESS)
        if cfg.username and not cfg.tls and not _is_loopback(cfg.host):
            log.warning("MQTT: the user name and password go to %s without TLS: anyone on that network can read "
                        "them (set mqtt.tls = true, port 8883, on a broker with a TLS listener)", cfg.host)
        if cfg.protocol == "3.1.1":
            log.warning("MQTT: protocol 3.1.1 cannot report a refused publish (an ACL denial is acknowledged and "
                        "dropped by the broker); protocol 5 reports it")

    # -- set-up --------------------------------------------------------------------------------------------------
    def _make_client(self, password):
        client = new_client(self._paho, self.cfg, self.cfg.client_id or f"edge-audio-{self.device_id}", password)
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.max_queued_messages_set(64)  # paho's own queue: we only hand it what we can track
        client.on_connect = self._guard(self._on_connect)
        client.on_disconnect = self._guard(self._on_disconnect)
        client.on_publish = self._guard(self._on_publish)
        client.on_message = self._guard(self._on_message)
        return client

    def _guard(self, fn):
        """An exception in a paho callback would silently kill the network loop: log it instead."""
        def wrapped(*args, **kwargs):
            try:
                fn(*args, **kwargs)
            except Exception:
                log.exception("error in MQTT callback %s", fn.__name__)
        return wrapped

    # -- audio-loop side: never blocks ---------------------------------------------------------------------------
    def publish_event(self, event: Event) -> None:
        """On disk (with a spool) before it returns: the audio loop moves on only once the event is durable."""
        payload = event.to_dict()  # once: the spool keeps it beside the JSON
        self.outbox.append(Message(self.topics.events, event.to_json(payload), qos=1), payload)
        self._queued = True

    def set_state(self, label: str, on: bool) -> None:
        topic = self.topics.state(label)
        with self._lock:
            self._retained[topic] = "ON" if on else "OFF"
        self._push_direct(Message(topic, "ON" if on else "OFF", qos=1, retain=True))

    def set_top(self, label: str) -> None:
        """Published at once with no hold (mqtt.top_hold_seconds = 0) or the first time, else by flush() once it
        has held."""
        label = self.top.offer(label)
        if label is not None:
            self._publish_top(label)

    def _publish_top(self, label: str) -> None:
        topic = self.topics.top
        with self._lock:
            self._retained[topic] = label
        self._push_direct(Message(topic, label, qos=0, retain=True))

    def publish_scores(self, payload: dict) -> None:
        self._push_direct(Message(self.topics.scores, json.dumps(payload)))

    def publish_metrics(self, payload: dict) -> None:
        self.outbox.mark_alive()
        self._push_direct(Message(self.topics.metrics, json.dumps(payload), retain=True))

    def recovered_open_events(self) -> tuple[list[dict], float]:
        return list(self.outbox.open_events.values()), self.outbox.last_alive

    def failure(self) -> str:
        return self.failed

    def check(self, warn) -> str:
        """The spool (opened read-only: the running service may hold it) and the Home Assistant payloads, built as
        they would be announced; nothing is sent (the broker is selftest's own check)."""
        spool = self.outbox.check(warn)
        if not self.cfg.homeassistant:
            return f"{spool}; Home Assistant discovery off"
        return f"{spool}; {len(self._discovery())} Home Assistant discovery payloads"

    def _push_direct(self, msg: Message) -> None:
        if len(self._direct) == self._direct.maxlen:
            self.dropped_other += 1
        self._direct.append(msg)
        self._queued = True

    def flush(self) -> None:
        """A top class that has now held goes out; wake the network thread once for everything queued since the
        last flush."""
        if self.top.pending is not None:
            label = self.top.due()
            if label is not None:
                self._publish_top(label)
        if self._queued:
            self._queued = False
            self.net.wake()

    @property
    def queue_depth(self) -> int:
        return len(self.outbox)

    @property
    def dropped_events(self) -> int:
        return self.outbox.dropped

    @property
    def connected(self) -> bool:
        return self._connected

    def health(self) -> dict:
        """Counters that add up: produced = delivered + refused + dropped + queued (queued includes in flight)."""
        o = self.outbox
        return {"mqtt_connected": self._connected, "reconnects": self.reconnects, "queue_depth": len(o),
                "produced_events": o.appended + o.recovered, "delivered_events": self.delivered,
                "dropped_events": o.dropped, "dropped_messages": self.dropped_other,  # extras, newest kept
                "refused_events": self.refused, "spool": o.path or "memory", "spool_recovered": o.recovered,
                "spool_corrupt_records": o.corrupt, "spool_problem": o.problem, "mqtt_error": self.last_error}

    # -- network thread ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.outbox.open()
        self._thread = threading.Thread(target=self._run_guarded, name="mqtt", daemon=True)
        self._thread.start()

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug or a setting paho rejects: say it once, and let the daemon stop
            self.failed = f"MQTT thread stopped: {exc.__class__.__name__}: {exc}"
            log.error("%s", self.failed)

    def _run(self) -> None:
        cfg = self.cfg
        delay = cfg.reconnect_min_seconds
        while not self._stop.is_set():
            try:
                self._awaiting_connack = True
                self.client.connect(cfg.host, cfg.port, cfg.keepalive_seconds, **self._connect_kwargs())
            except (OSError, ValueError, UnicodeError) as exc:  # ssl.SSLError is an OSError
                self._note_error(f"cannot connect to {cfg.host}:{cfg.port}: {describe_error(exc)}")
                delay = self._backoff(delay)
                continue
            self.net.connected()
            while not self._stop.is_set():
                if self._connected:
                    delay = cfg.reconnect_min_seconds
                    self._pump()
                if not self.net.serve_once():
                    break
            if self._awaiting_connack and not self._stop.is_set():
                hint = " (a TLS port? check mqtt.tls and mqtt.port)" if not cfg.tls else ""
                self._note_error(f"{cfg.host}:{cfg.port} closed the connection before answering{hint}")
            self._set_disconnected()
            if not self._stop.is_set():
                delay = self._backoff(delay)

    def _connect_kwargs(self) -> dict:
        if self.cfg.protocol != "5":
            return {}
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        return {"clean_start": True, "properties": props}

    def _backoff(self, delay: float) -> float:
        self._stop.wait(delay * jitter(0.5, 1.0))  # jitter: a fleet must not reconnect in lockstep
        return min(delay * 2, self.cfg.reconnect_max_seconds)

    def _note_error(self, message: str) -> None:
        if message != self.last_error:  # one line per new problem, not one per retry
            log.error("MQTT: %s", message)
            self.last_error = message

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        self._awaiting_connack = False
        if reason_code.is_failure:
            hint = {"Bad user name or password": " (check mqtt.username and the password)",
                    "Not authorized": " (check the broker's ACL and credentials)"}.get(str(reason_code), "")
            self._note_error(f"broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason_code}{hint}")
            client.disconnect()
            return
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        self.last_error = ""
        log.info("MQTT: connected to %s:%d as %s", self.cfg.host, self.cfg.port, self.base)
        self._connected = True
        # an event in flight stays in flight: the client library sends it again itself (QoS 1, DUP flag), so the
        # outbox does not add a copy of its own
        client.publish(self.status_topic, "online", qos=1, retain=True)
        with self._lock:
            retained = list(self._retained.items())
        for topic, payload in retained:
            client.publish(topic, payload, qos=1, retain=True)
        if self.cfg.homeassistant:
            client.subscribe(homeassistant.birth_topic(self.cfg.discovery_prefix), qos=1)
            client.subscribe(homeassistant.own_configs(self.topics, self.cfg.discovery_prefix), qos=1)
            self._announce_discovery()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self._set_disconnected()  # may fire twice for one outage: idempotent

    def _set_disconnected(self) -> None:
        if self._connected and not self._stop.is_set():
            log.warning("MQTT: disconnected from %s:%d; events are kept in the outbox (%d queued)",
                        self.cfg.host, self.cfg.port, len(self.outbox))
        self._connected = False

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        inflight = self._inflight
        if inflight is None or inflight[0] != mid:
            return
        if reason_code is not None and reason_code.is_failure:  # MQTT 5 tells ACL denials (3.1.1 hides them)
            self.refused += 1  # not delivered, and not sent again: it would be refused again
            self._note_error(f"broker refused to accept {inflight[1].topic}: {reason_code} "
                             "(check the ACL for this user)")
        else:
            self.delivered += 1
        self.outbox.remove_head(inflight[1])
        self._inflight = None  # the network thread sends the next one as soon as this callback returns

    def _on_message(self, client, userdata, message):
        if message.topic == homeassistant.birth_topic(self.cfg.discovery_prefix) and message.payload == b"online":
            self._announce = True  # Home Assistant restarted: announce again
            return
        stale = homeassistant.stale_config(message.topic, message.payload, self.topics, self.watched)
        if stale:  # a label no longer watched: remove its entity and its state
            log.info("Home Assistant: removing %s (no longer in detector.allow)", stale)
            client.publish(message.topic, "", qos=1, retain=True)
            client.publish(self.topics.state(stale), "", qos=1, retain=True)

    def _pump(self) -> None:
        """Send what is waiting: the head of the outbox (one in flight at a time keeps order), then extras."""
        sent = False
        if self._announce:
            self._announce = False
            self._announce_discovery()
            sent = True
        if self._inflight is None:
            head = self.outbox.head()
            if head is not None:
                sent = True
                info = self.client.publish(head.topic, head.payload, qos=head.qos, retain=head.retain)
                # NO_CONN: the client library queued it and sends it when the connection is back
                if info.rc in (self._paho.MQTT_ERR_SUCCESS, self._paho.MQTT_ERR_NO_CONN):
                    self._inflight = (info.mid, head)
        while self._direct:
            msg = self._direct.popleft()
            self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
            sent = True
        if sent:
            self.net.wrote()

    def _discovery(self) -> list[tuple[str, str]]:
        return homeassistant.discovery_messages(self.topics, self.cfg.discovery_prefix, self.watched, self.model,
                                                self.board)

    def _announce_discovery(self) -> None:
        for topic, payload in self._discovery():
            self.client.publish(topic, payload, qos=1, retain=True)

    # -- shutdown ------------------------------------------------------------------------------------------------
    def stop(self, timeout_s: float = 3.0) -> None:
        """Deliver what is queued (up to the timeout), publish 'offline', disconnect."""
        self.flush()
        deadline = time.monotonic() + timeout_s
        # wait even while (re)connecting: a connection still in its TLS handshake is about to deliver them
        while (self.outbox or (self._connected and self._direct)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.outbox:
            where = f"kept in the spool {self.outbox.path} for the next start" if self.outbox.path else \
                "lost (mqtt.spool_file = 'none' keeps them in memory only)"
            log.warning("MQTT: %d event(s) not delivered at shutdown: %s", len(self.outbox), where)
        if self._connected:
            info = self.client.publish(self.status_topic, "offline", qos=1, retain=True)
            end = time.monotonic() + 1.0
            while not info.is_published() and self._connected and time.monotonic() < end:
                time.sleep(0.02)
        self._stop.set()
        self.net.wake()
        if self._thread is not None:
            self._thread.join(2.0)
        try:
            self.client.disconnect()
        except Exception:
            pass
        self.outbox.close()
        self.net.close()


def _is_loopback(host: str) -> bool:
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_client(paho, cfg: MqttConfig, client_id: str, password: str | None, reconnect: bool = False):
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


def describe_error(exc: BaseException) -> str:
    """One line for a failed connection attempt."""
    ssl = sys.modules.get("ssl")  # not loaded (TLS off): no TLS error is possible, an SSL socket needs it
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); check mqtt.ca_file"
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running on that port?)"
    return str(exc) or exc.__class__.__name__
