"""MQTT publisher: one network thread owns the paho client; the audio loop only appends to bounded queues.

Topic layout in topics.py; events go through the ordered outbox (outbox.py), one in flight at a time so order
holds, and an event the broker will not take is set aside after a few tries (delivery.py); the retained topics
(status, states, top class, Home Assistant discovery from homeassistant.py) are kept as the broker must hold them
and sent again, paced, after every connection (retained.py); connecting, the back-off and what a failed connection
says are in connection.py.

The network thread sleeps until the broker sends something, the audio loop has queued work or a keepalive is due
(netloop.py): an idle daemon wakes a few times per keepalive interval. With mqtt.clips a kept clip follows its end
event through the outbox as a reference, its audio read only when it is sent (clipsend.py).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time

from ..config import MqttConfig
from ..core.errors import ConfigError
from ..core.events import Event
from ..sourceconfig import MAX_SOURCES
from . import clipsend, homeassistant
from .base import Sink
from .connection import (Backoff, closed_before_connack, connack_timeout, connect_kwargs, describe_error,
                         forget_unacknowledged, is_loopback, new_client, no_connack)
from .delivery import HeadDelivery, Problems
from .netloop import NetworkLoop, import_paho
from .outbox import Message, Outbox
from .retained import RetainedSet
from .sourcetopics import SourceTopics
from .topics import Topics

__all__ = ["MqttSink", "describe_error", "new_client"]

log = logging.getLogger("edge.mqtt")

CONNECTION = "connection"  # what a problem is about (the events' problems: delivery.EVENTS; a retained topic's: it)


class MqttSink(Sink):
    """publish_event / set_state / publish_scores / publish_metrics / set_source_status from the audio loop, then
    flush() before it sleeps (one wake-up of the network thread for all of them); start() / stop(). `watched`:
    {source id: [labels]}, or a list of labels for the one source "" (a config with [audio] alone)."""

    def __init__(self, cfg: MqttConfig, device_id: str, password: str | None = None, watched=(),
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
        # each source's topics, watched labels and top-class hold (what its retained top topic shows)
        self.sources = SourceTopics(self.topics, watched, cfg.top_hold_seconds, clock)
        self.watched = self.sources.watched
        self.model = model
        self.board = board
        self.outbox = Outbox(cfg.outbox_max, cfg.outbox_policy, spool)
        # QoS 0 extras, newest win; room for one metrics pass of the most sources (the device's payload and one per
        # source, queued together) with their top classes: with [[sources]] at MAX_SOURCES the device's own metrics
        # were the oldest of 257 in 256 places, dropped every time
        self._direct: collections.deque[Message] = collections.deque(maxlen=2 * MAX_SOURCES + 64)
        # what the broker must hold, sent again on every connect: every watched label starts OFF, a named source
        # "offline" until the daemon says it delivers audio
        self.retained = RetainedSet()
        self.retained.set(self.status_topic, "online")
        for topic, value in self.sources.initial():
            self.retained.set(topic, value)
        self._discovery_topics = []
        if cfg.homeassistant:
            for topic, payload in self._discovery():
                self.retained.set(topic, payload)
                self._discovery_topics.append(topic)
        self._queued = False  # something waits for the next flush()
        self._stop = threading.Event()
        self._connected = False
        self.problems = Problems()  # mqtt_error
        self.delivery = HeadDelivery(self.outbox, self.problems)
        self.dropped_other = self.reconnects = self.connects = 0
        self.failed = ""  # set when the network thread died: the daemon stops and systemd restarts it
        self._thread: threading.Thread | None = None
        self._awaiting_connack = False
        self._dropped_for = ""  # the client library's reason for the last drop
        self.backoff = Backoff(cfg.reconnect_min_seconds, cfg.reconnect_max_seconds)
        self.client = (client_factory or self._make_client)(password)
        self.net = NetworkLoop(self.client, cfg.keepalive_seconds, paho.MQTT_ERR_SUCCESS)
        if cfg.username and not cfg.tls and not is_loopback(cfg.host):
            log.warning("MQTT: the user name and password go to %s without TLS: anyone on that network can read "
                        "them (set mqtt.tls = true, port 8883, on a broker with a TLS listener)", cfg.host)
        if cfg.protocol == "3.1.1":
            log.warning("MQTT: protocol 3.1.1 cannot report a refused publish (the broker acknowledges an ACL "
                        "denial and drops the message, and it counts as delivered); protocol 5 reports it")

    # -- set-up --------------------------------------------------------------------------------------------------
    def _make_client(self, password):
        client = new_client(self._paho, self.cfg, self.cfg.client_id or f"edge-audio-{self.device_id}", password)
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.max_queued_messages_set(64)  # paho's own queue: the sink hands it at most 1 event + 16 retained
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
        topic = self.sources.topics(event.source).events  # every source's through the one ordered outbox
        self.outbox.append(Message(topic, event.to_json(payload), qos=1), payload)
        self._queued = True

    def publish_clip(self, record: dict, path: str) -> None:
        """With mqtt.clips: the clip's reference behind its end event, on disk (with a spool) before it returns."""
        event_id = record.get("event_id")
        msg = clipsend.reference(self.topics.clip(event_id), record, path) if self.cfg.clips and \
            clipsend.valid_event_id(event_id) else None
        if msg is not None:
            self.outbox.append(msg)
            self._queued = True
        elif self.cfg.clips:
            log.error("MQTT: clip %r not published: its record has no usable event id, size or sha256", event_id)

    def set_state(self, label: str, on: bool, source: str = "") -> None:
        self.retained.set(self.sources.topics(source).state(label), "ON" if on else "OFF")
        self._queued = True

    def set_top(self, label: str, source: str = "") -> None:
        """Published at once with no hold (mqtt.top_hold_seconds = 0) or the source's first, else by flush() once
        it has held."""
        label = self.sources.offer_top(label, source)
        if label is not None:
            self._publish_top(label, source)

    def _publish_top(self, label: str, source: str) -> None:
        self.retained.set(self.sources.topics(source).top, label)
        self._queued = True

    def publish_scores(self, payload: dict, source: str = "") -> None:
        self._push_direct(Message(self.sources.topics(source).scores, json.dumps(payload)))

    def publish_metrics(self, payload: dict, source: str = "") -> None:
        """The device's metrics (source ""), or a named source's own part on its metrics topic."""
        if not source:
            self.outbox.mark_alive()
        self._push_direct(Message(self.sources.topics(source).metrics, json.dumps(payload), retain=True))

    def set_source_status(self, source: str, online: bool) -> None:
        """A named source delivers audio again, or was lost (source "": the device's status is the sink's own)."""
        if source:
            self.retained.set(self.sources.topics(source).status, "online" if online else "offline")
            self._queued = True

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
        n = len(self.watched)
        return f"{spool}; {len(self._discovery())} Home Assistant discovery payloads for {n} source{'s' * (n != 1)}"

    def _push_direct(self, msg: Message) -> None:
        if len(self._direct) == self._direct.maxlen:
            self.dropped_other += 1
        self._direct.append(msg)
        self._queued = True

    def flush(self) -> None:
        """A top class that has now held goes out; wake the network thread once for everything queued since the
        last flush."""
        if self.sources.holding:
            for source, label in self.sources.due_tops():
                self._publish_top(label, source)
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
        """Counters that add up: produced = delivered + set aside + dropped + queued (queued includes in flight);
        refused_events are the set-aside events the broker refused (MQTT 5: delivery_confirmed; with 3.1.1 the
        broker acknowledges a refused message and it counts as delivered). A clip (mqtt.clips) is one message of
        the outbox too: clips_sent of the delivered ones, clips_unsent of those set aside, are clips."""
        o = self.outbox
        return {"mqtt_connected": self._connected, "reconnects": self.reconnects, "queue_depth": len(o),
                "produced_events": o.appended + o.recovered, "delivered_events": self.delivery.delivered,
                "dropped_events": o.dropped, "dropped_messages": self.dropped_other,  # extras, newest kept
                "refused_events": self.delivery.refused, "set_aside_events": self.delivery.set_aside,
                "clips_sent": self.delivery.clips_sent, "clips_unsent": self.delivery.clips_unsent,
                "refused_messages": self.retained.refusals, "delivery_confirmed": self.cfg.protocol == "5",
                "spool": o.path or "memory", "spool_recovered": o.recovered, "spool_corrupt_records": o.corrupt,
                "spool_set_aside": o.set_aside_count, "spool_lost_events": o.lost,
                "spool_unwritten_events": o.unwritten, "spool_problem": o.problem, "mqtt_error": self.problems.current}

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
        while not self._stop.is_set():
            if self._connect():
                self._serve()
                self._set_disconnected()
            if not self._stop.is_set():
                self._stop.wait(self.backoff.next_delay())  # jittered: a fleet must not reconnect in lockstep

    def _connect(self) -> bool:
        cfg = self.cfg
        try:
            self._awaiting_connack = True
            self.client.connect(cfg.host, cfg.port, cfg.keepalive_seconds, **connect_kwargs(cfg.protocol))
        except (OSError, ValueError, UnicodeError) as exc:  # ssl.SSLError is an OSError
            self.problems.note(f"cannot connect to {cfg.host}:{cfg.port}: {describe_error(exc)}", CONNECTION)
            return False
        self.net.connected()
        return True

    def _serve(self) -> None:
        """One connection, until it is gone (or the broker never answers CONNECT)."""
        cfg = self.cfg
        waited = connack_timeout(cfg.keepalive_seconds)
        deadline = time.monotonic() + waited
        self._dropped_for = ""
        while not self._stop.is_set():
            if self._connected:
                self._pump()
            elif self._awaiting_connack and time.monotonic() >= deadline:
                break
            if not self.net.serve_once(deadline if self._awaiting_connack else self.delivery.hold_until):
                break
        if self._awaiting_connack and not self._stop.is_set():  # the client library's keepalive may come first
            silent = time.monotonic() >= deadline or self._dropped_for == "Keep alive timeout"
            self.problems.note(no_connack(cfg.host, cfg.port, waited, cfg.tls) if silent else
                               closed_before_connack(cfg.host, cfg.port, cfg.tls), CONNECTION)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        self._awaiting_connack = False
        if reason_code.is_failure:
            hint = {"Bad user name or password": " (check mqtt.username and the password)",
                    "Not authorized": " (check the broker's ACL and credentials)"}.get(str(reason_code), "")
            self.problems.note(f"broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason_code}{hint}",
                               CONNECTION)
            client.disconnect()
            return
        forget_unacknowledged(client)  # the head and the retained topics are sent again, as they are now
        self.delivery.connected()
        self.backoff.answered()
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        self.problems.clear(CONNECTION)
        log.info("MQTT: connected to %s:%d as %s", self.cfg.host, self.cfg.port, self.base)
        self.retained.set(self.status_topic, "online")
        self.retained.connected()
        self._connected = True
        if self.cfg.homeassistant:
            client.subscribe(homeassistant.birth_topic(self.cfg.discovery_prefix), qos=1)
            for topic in self.sources.config_subscriptions(self.cfg.discovery_prefix):
                client.subscribe(topic, qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self._dropped_for = str(reason_code)
        self._set_disconnected(reason_code)  # may fire twice for one outage: idempotent
        self.delivery.dropped(reason_code, self._stop.is_set())

    def _set_disconnected(self, reason=None) -> None:
        if self._connected and not self._stop.is_set():
            why = f" ({reason})" if reason is not None else ""
            log.warning("MQTT: disconnected from %s:%d%s; events are kept in the outbox (%d queued)",
                        self.cfg.host, self.cfg.port, why, len(self.outbox))
        self._connected = False

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        refusal = str(reason_code) if reason_code is not None and reason_code.is_failure else ""  # MQTT 5 only
        retained = self.retained.acknowledged(mid, refusal)
        if retained is None:
            self.delivery.acknowledged(mid, refusal)
        elif refusal:
            self.problems.note(f"broker refused to accept {retained[0]}: {refusal} (check the ACL for this user)",
                               retained[0])
        else:
            self.problems.clear(retained[0])

    def _on_message(self, client, userdata, message):
        if message.topic == homeassistant.birth_topic(self.cfg.discovery_prefix) and message.payload == b"online":
            self.retained.touch(self._discovery_topics)  # Home Assistant restarted: announce again
            return
        stale = self.sources.stale(message.topic, message.payload, self._discovery_topics)
        if stale is not None:  # a label no longer watched, an entity from before [[sources]]: remove it, its state
            what, also = stale
            log.info("Home Assistant: removing %s", what)
            for topic in (message.topic, *also):
                self.retained.set(topic, "")

    def _pump(self) -> None:
        """Send what is waiting: the head of the outbox (one in flight at a time keeps order), the retained topics
        that changed (paced), then extras."""
        ok = self._paho.MQTT_ERR_SUCCESS
        sent = self.delivery.send(self._publish_event, ok) + self.retained.pump(self._publish_retained, ok)
        while self._direct:
            msg = self._direct.popleft()
            if self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain).rc != ok:
                self.dropped_other += 1  # QoS 0 on a connection that just went: not sent
            sent += 1
        if sent:
            self.net.wrote()

    def _publish_event(self, msg: Message):
        payload = clipsend.read_clip(msg, self.cfg.clip_max_kb) if msg.kind == clipsend.CLIP_KIND else msg.payload
        return self.client.publish(msg.topic, payload, qos=msg.qos, retain=msg.retain)

    def _publish_retained(self, topic: str, value: str):
        return self.client.publish(topic, value, qos=1, retain=True)

    def _discovery(self) -> list[tuple[str, str]]:
        return self.sources.discovery(self.cfg.discovery_prefix, self.model, self.board)

    # -- shutdown ------------------------------------------------------------------------------------------------
    def stop(self, timeout_s: float = 3.0) -> None:
        """Deliver what is queued (up to the timeout), publish 'offline' (every named source's, then the device's),
        disconnect."""
        self.flush()
        deadline = time.monotonic() + timeout_s
        # wait even while (re)connecting: a connection still in its TLS handshake is about to deliver them
        while (self.outbox or (self._connected and (self._direct or not self.retained.settled()))) and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        if self.outbox:  # where they are: the spool, or lost (memory only, or a spool that cannot be written)
            log.warning("MQTT: %d event(s) not delivered at shutdown: %s", len(self.outbox),
                        self.outbox.shutdown_note())
        if self._connected:
            offline = [self.sources.topics(s).status for s in self.sources.named] + [self.status_topic]
            for topic in offline:
                self.retained.set(topic, "offline")
            self.net.wake()
            end = time.monotonic() + 1.0
            while not all(self.retained.holds(t, "offline") for t in offline) and self._connected and \
                    time.monotonic() < end:
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
