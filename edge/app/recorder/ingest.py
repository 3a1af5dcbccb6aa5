"""The recorder's MQTT side: one paho client (MQTT 5, its own network thread) that stores what the devices publish.

Subscriptions (<p> the topic prefix, <g> the group):

    $share/<g>/<p>/+/events, $share/<g>/<p>/+/+/events     QoS 1, shared: the recorders of a group split them
    $share/<g>/<p>/+/clips/+                                 QoS 1, shared
    $share/<g>/<p>/+/metrics, $share/<g>/<p>/+/+/metrics   QoS 1, shared
    <p>/+/status, <p>/+/+/status                           QoS 1, every recorder: a broker never sends retained
                                                           messages to a shared subscription (MQTT 5, 4.8.2), and
                                                           a status is retained and changes rarely
    <p>/+/top, <p>/+/+/top                                 QoS 0, every recorder: the live top class (not stored)

The session persists (clean_start False, SessionExpiryInterval): while a recorder is away, the broker keeps its
messages. Acknowledgements are manual: a message is acknowledged once what it says is committed to the store (or
once it is refused as bad input), so a recorder killed between the two gets it again; the store is idempotent on
(event_id, type), so such a copy never makes a second row.

Bad input (malformed JSON, an event Event.from_dict refuses, a device or event id that cannot be a file name, an
oversized clip, a clip that is not FLAC, Ogg or WAV, or whose sha256 is not the one its end event gave) is said in
one log line per reason (again at most once a minute, with how many came since), counted in `rejected`, and
acknowledged, so it is not delivered again and again.

A clip for an event the store does not have yet (its end went to another recorder of the group, which has not
stored it yet) is held, unacknowledged, for up to options.clip_wait_s and looked for again every half second.
After that it is kept anyway (the file written, its row added: it joins its event when that comes, and the
retention removes it with age if it never does) and counted as "clip_unknown_event". A store that fails (a
database gone away) holds the message the same way, unacknowledged and tried again, without a time limit: nothing
is acknowledged that was not stored.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from pathlib import Path

from ...core.events import Event
from ...core.files import sha256_hex
from ...core.names import shown
from ...sinks.topics import Topics
from .options import Options

log = logging.getLogger("edge.recorder")

DONE, HOLD = "done", "hold"
RETRY_S = 0.5  # how often held messages are tried again
SAY_EVERY_S = 60.0  # a reason said again at most this often
LIVE_QUEUE = 256  # a live listener that falls this far behind loses messages (the newest are kept)
MAX_NAME = 200
MAGIC = ((b"fLaC", "flac"), (b"OggS", "opus"), (b"RIFF", "wav"))
UNFIT = re.compile(r"[/\\\x00-\x1f\x7f]")  # what a file name may not hold


def name_problem(name: str) -> str:
    """Why a device or event id cannot be a file name (a folder or a file of the clips folder); "" when it can."""
    if not name:
        return "empty"
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if name.startswith("."):
        return "starts with '.'"
    if UNFIT.search(name):
        return "has a separator or a control character"
    return ""


def clip_extension(data: bytes) -> str:
    return next((ext for magic, ext in MAGIC if data.startswith(magic)), "")


class Held:
    __slots__ = ("connection", "deadline", "msg")

    def __init__(self, msg, deadline: float | None, connection: int):
        self.msg, self.deadline, self.connection = msg, deadline, connection


class Ingest:
    """start() connects (and keeps reconnecting) in the client's own thread; stop() disconnects."""

    def __init__(self, store, options: Options, clock=time.time):
        self.store, self.options, self.clock = store, options, clock
        self.prefix = options.prefix
        self.clips = Path(options.clips_dir) if options.clips_dir else None
        self.received = 0
        self.stored = 0  # new rows (events, clips, status changes and metrics)
        self.duplicates = 0  # events and clips the store already had (at-least-once copies)
        self.rejected: dict[str, int] = {}
        self.store_errors = 0
        self.last_message_ts: float | None = None
        self.connected = False
        self._session = ""
        self.connection = 0  # which connection this is: a message is acknowledged on the one it came on only
        self.client = None
        self._lock = threading.Lock()
        self._live: dict[str, set] = {}
        self._held: list[Held] = []
        self._said: dict[str, tuple[float, int]] = {}  # reason -> (when last said, how many since)
        self._stopping = threading.Event()
        self._retrier: threading.Thread | None = None

    def start(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from ...config import MqttConfig
        from ...sinks.connection import failed_attempt, new_client
        from ...sinks.netloop import import_paho

        o = self.options
        cfg = MqttConfig(host=o.host, port=o.port, protocol="5", username=o.username, tls=o.tls,
                         ca_file=o.ca_file, cert_file=o.cert_file, key_file=o.key_file)
        client = new_client(import_paho(tls=o.tls), cfg, o.the_client_id, o.password, reconnect=True)
        client.manual_ack_set(True)
        client.reconnect_delay_set(0.2, 5.0)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = lambda *_: self.say("broker", failed_attempt(o.host, o.port,
                                                                              "--ca-file (ca_file)"))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(o.session_expiry_s)
        self.client = client
        client.connect_async(o.host, o.port, 30, clean_start=False, properties=props)
        client.loop_start()
        self._retrier = threading.Thread(target=self._retry_loop, name="recorder-retry", daemon=True)
        self._retrier.start()

    def stop(self) -> None:
        self._stopping.set()
        if self.client is not None:
            self.client.disconnect()  # held messages stay unacknowledged: the broker sends them again
            self.client.loop_stop()
        if self._retrier is not None:
            self._retrier.join(5)

    def subscriptions(self) -> list[tuple[str, int]]:
        p, share = self.prefix, f"$share/{self.options.group}/{self.prefix}"
        shared = [f"{share}/+/events", f"{share}/+/+/events", f"{share}/+/clips/+", f"{share}/+/metrics",
                  f"{share}/+/+/metrics"]
        return [(t, 1) for t in shared + [f"{p}/+/status", f"{p}/+/+/status"]] + \
            [(f"{p}/+/top", 0), (f"{p}/+/+/top", 0)]

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self.say("broker", f"the broker refused the connection: {reason_code}")
            return
        with self._lock:
            self.connection += 1
            if flags.session_present:  # the broker sends every unacknowledged message again
                self._held = []
        self._session = "resumed" if flags.session_present else "new"
        client.subscribe(self.subscriptions())

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        topics = self.subscriptions()
        refused = [t for (t, _), rc in zip(topics, reason_codes) if rc.is_failure]
        if refused:
            self.say("subscribe", f"the broker refused the subscriptions {', '.join(refused)} (its ACL?)")
        self.connected = True  # and subscribed: from here on nothing published is missed
        log.info("connected to %s:%s as %s (session %s), subscribed", self.options.host, self.options.port,
                 self.options.the_client_id, self._session)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.connected = False
        if not self._stopping.is_set():
            self.say("broker", f"disconnected from {self.options.host}:{self.options.port} ({reason_code}); "
                               "connecting again")

    def _on_message(self, client, userdata, msg):
        now = self.clock()
        with self._lock:
            self.received += 1
            self.last_message_ts = now
        try:
            outcome = self.handle(msg, now)
        except Exception as exc:  # a bug or a store that failed: held, never acknowledged unstored
            outcome = self._store_failed(exc)
        if outcome == HOLD:
            deadline = now + self.options.clip_wait_s if "/clips/" in msg.topic else None
            with self._lock:
                self._held.append(Held(msg, deadline, self.connection))
        else:
            self.ack(msg, self.connection)

    def ack(self, msg, connection: int) -> None:
        """Acknowledged on the connection it came on; after a reconnection its packet id may name another."""
        if msg.qos and self.client is not None and connection == self.connection:
            self.client.ack(msg.mid, msg.qos)

    def handle(self, msg, now: float, last_try: bool = False) -> str:
        """DONE (stored, a copy already stored, or refused) or HOLD (try again later). Store errors raise."""
        device, source, kind = Topics.parse(msg.topic, self.prefix)
        if kind == "top":
            self.fan_out(device, source, "top", msg.payload.decode("utf-8", "replace"), now)
            return DONE
        why = name_problem(device)
        if why:
            return self.reject("device_id", f"{shown(msg.topic)}: the device id {why}")
        if kind.startswith("clips/"):
            return self.clip(device, kind.removeprefix("clips/"), msg.payload, now, last_try)
        if kind == "events":
            return self.event(device, source, msg.payload, now)
        if kind == "status":
            return self.status(device, source, msg.payload, now)
        if kind == "metrics":
            return self.metrics(device, source, msg.payload, now)
        return self.reject("topic", f"{shown(msg.topic)}: not a topic the recorder reads")

    def event(self, device: str, source: str, data: bytes, now: float) -> str:
        try:
            payload = json.loads(data)
        except ValueError:
            return self.reject("malformed_json", f"{device}: an event that is not JSON: {shown(repr(data[:60]))}")
        try:
            e = Event.from_dict(payload)
        except ValueError as exc:
            return self.reject("bad_event", f"{device}: an event refused: {exc}")
        if (e.device_id and e.device_id != device) or e.source != source:
            return self.reject("topic_mismatch", f"{device}: event {shown(e.event_id)} names device "
                                                 f"{shown(e.device_id)} source {shown(e.source)}, not its topic's")
        why = name_problem(e.event_id)
        if why:
            return self.reject("event_id", f"{device}: the event id {shown(e.event_id)} {why}")
        payload["device_id"] = device
        new = self.store.add_event(payload, now)
        self._count(new)
        self.fan_out(device, source, "event", payload, now)
        return DONE

    def clip(self, device: str, event_id: str, data: bytes, now: float, last_try: bool) -> str:
        why = name_problem(event_id)
        if why:
            return self.reject("event_id", f"{device}: a clip whose event id {shown(event_id)} {why}")
        if len(data) > self.options.clip_max_bytes:
            return self.reject("clip_too_large", f"{device}: clip {event_id} of {len(data)} bytes is over the "
                                                 f"limit of {self.options.clip_max_bytes}")
        ext = clip_extension(data)
        if not ext:
            return self.reject("clip_format", f"{device}: clip {event_id} is not FLAC, Ogg or WAV")
        sha = sha256_hex(data)
        row = self.store.event(event_id)
        if row is None and not last_try:
            return HOLD
        if row is not None:
            if row.get("device_id") != device:
                return self.reject("topic_mismatch", f"{device}: clip {event_id} is an event of device "
                                                     f"{shown(str(row.get('device_id')))}")
            expected = ((row.get("end") or {}).get("clip") or {}).get("sha256")
            if expected and expected != sha:
                return self.reject("clip_sha256", f"{device}: clip {event_id} is not the file its end event "
                                                  f"names (sha256 {sha[:12]}..., not {str(expected)[:12]}...)")
        known = self.store.clip(event_id)
        if known is not None and known.get("sha256") == sha and os.path.exists(known.get("path", "")):
            self._count(False)
            return DONE
        path = self.write_clip(device, event_id, ext, data)
        self._count(self.store.add_clip(event_id, device, str(path), len(data), sha, now))
        if row is None:
            self.reject("clip_unknown_event", f"{device}: clip {event_id} came for an event not stored after "
                                              f"{self.options.clip_wait_s:g} s; kept alone")
        return DONE

    def write_clip(self, device: str, event_id: str, ext: str, data: bytes) -> Path:
        """<clips>/<device>/<event id>.<ext>, atomically: a temporary file, fsync, rename, fsync of the folder."""
        if self.clips is None:
            raise RuntimeError("no clips folder")
        folder = self.clips / device
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{event_id}.{ext}"
        tmp = folder / f".{event_id}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def status(self, device: str, source: str, data: bytes, now: float) -> str:
        text = data.decode("utf-8", "replace").strip()
        if text not in ("online", "offline"):
            return self.reject("bad_status", f"{device}: a status that is not online or offline: {shown(text)}")
        self.store.set_status(device, source, text == "online", now)
        self.fan_out(device, source, "status", text, now)
        return DONE

    def metrics(self, device: str, source: str, data: bytes, now: float) -> str:
        try:
            payload = json.loads(data)
        except ValueError:
            return self.reject("malformed_json", f"{device}: metrics that are not JSON: {shown(repr(data[:60]))}")
        if not isinstance(payload, dict):
            return self.reject("bad_metrics", f"{device}: metrics that are not a JSON object")
        self.store.add_metrics(device, source, payload, now)
        self._count(True)
        self.fan_out(device, source, "metrics", payload, now)
        return DONE

    def _retry_loop(self) -> None:
        while not self._stopping.wait(RETRY_S):
            self.retry_held()

    def retry_held(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        keep = []
        for h in held:
            now = self.clock()
            try:
                outcome = self.handle(h.msg, now, last_try=h.deadline is not None and now >= h.deadline)
            except Exception as exc:
                outcome = self._store_failed(exc)
            if outcome == HOLD:
                keep.append(h)
            else:
                self.ack(h.msg, h.connection)
        with self._lock:
            self._held = keep + self._held

    def _store_failed(self, exc: Exception) -> str:
        with self._lock:
            self.store_errors += 1
        self.say("store", f"the store failed ({exc.__class__.__name__}: {str(exc)[:200]}); the message is held "
                          "and tried again")
        return HOLD

    def reject(self, reason: str, line: str) -> str:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.say(reason, f"refused ({reason}): {line}")
        return DONE

    def say(self, reason: str, line: str) -> None:
        """`line` logged once per reason, then at most once every SAY_EVERY_S with how many came since."""
        now = time.monotonic()
        with self._lock:
            last, since = self._said.get(reason, (None, 0))
            if last is not None and now - last < SAY_EVERY_S:
                self._said[reason] = (last, since + 1)
                return
            self._said[reason] = (now, 0)
        log.warning("%s%s", line, f" (and {since} more since the last)" if since else "")

    def _count(self, new: bool) -> None:
        with self._lock:
            if new:
                self.stored += 1
            else:
                self.duplicates += 1

    def stats(self) -> dict:
        """The figures /metrics exports."""
        with self._lock:
            return {"received": self.received, "stored": self.stored, "duplicates": self.duplicates,
                    "rejected": dict(self.rejected), "store_errors": self.store_errors, "held": len(self._held),
                    "last_message_ts": self.last_message_ts, "connected": self.connected}

    def subscribe_live(self, device_id: str) -> queue.Queue:
        """A queue of {"kind", "device_id", "source", "payload", "ts"} for every status, metrics, top and event of
        `device_id` this recorder receives from now on (events and metrics: its share of the group's)."""
        q: queue.Queue = queue.Queue(LIVE_QUEUE)
        q.device_id = device_id
        with self._lock:
            self._live.setdefault(device_id, set()).add(q)
        return q

    def unsubscribe_live(self, q: queue.Queue) -> None:
        with self._lock:
            listeners = self._live.get(getattr(q, "device_id", None), set())
            listeners.discard(q)
            if not listeners:
                self._live.pop(getattr(q, "device_id", None), None)

    def fan_out(self, device: str, source: str, kind: str, payload, now: float) -> None:
        with self._lock:
            listeners = list(self._live.get(device, ()))
        item = {"kind": kind, "device_id": device, "source": source, "payload": payload, "ts": now}
        for q in listeners:
            while True:
                try:
                    q.put_nowait(item)
                    break
                except queue.Full:  # a slow reader: drop its oldest
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        pass
