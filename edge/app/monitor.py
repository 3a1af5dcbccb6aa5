"""`edge-audio monitor`: watch events and status of one or all devices on a broker, with or without named sources
(both topic layouts, edge/sinks/topics.py; a named source is shown as device/source). Its client comes from the
daemon's factory (edge/sinks/mqtt.py new_client): the same protocol, credentials and TLS settings, a client
certificate included."""

from __future__ import annotations

import json
import os
import threading
import time

from ..config import MqttConfig
from ..core.errors import ConfigError, InputError
from ..core.events import Event, iso
from ..sinks.topics import Topics
from .args import MQTT, config_key, in_bounds
from .command import add_command, say


def run_monitor(args) -> int:
    client = monitor_client(args)
    watch = Watch(args, Topics(args.prefix, args.device or "+").subscriptions(metrics=args.metrics))
    client.on_connect = watch.on_connect
    client.on_message = watch.on_message
    try:
        client.connect(args.host, args.port, 30)
    except OSError as exc:  # TLS errors too (ssl.SSLError is an OSError)
        raise InputError(f"cannot connect to {args.host}:{args.port}: {exc}") from None
    client.loop_start()
    try:
        watch.wait(args.timeout)
    finally:
        client.loop_stop()
        client.disconnect()
    if watch.problem:
        raise InputError(watch.problem)
    if args.count and watch.seen < args.count:
        say(f"timed out after {watch.seen} of {args.count} messages", "edge-audio monitor")
        return 1
    return 0


def monitor_client(args):
    """A client from the sink's factory with the broker settings the flags give (--cert-file or --key-file or
    --ca-file: TLS); InputError for a flag that cannot work."""
    from ..sinks.mqtt import new_client
    from ..sinks.netloop import import_paho

    if bool(args.cert_file) != bool(args.key_file):
        raise InputError("--cert-file and --key-file go together")
    for flag, path in (("--ca-file", args.ca_file), ("--cert-file", args.cert_file), ("--key-file", args.key_file)):
        if path and not os.access(path, os.R_OK):
            raise InputError(f"{flag} {path}: {'not found' if not os.path.exists(path) else 'not readable'}")
    cfg = MqttConfig(host=args.host, port=args.port, protocol=args.protocol, username=args.username or "",
                     tls=bool(args.tls or args.ca_file or args.cert_file), ca_file=args.ca_file or "",
                     cert_file=args.cert_file or "", key_file=args.key_file or "")
    try:
        paho = import_paho(tls=cfg.tls)
    except ImportError:
        raise InputError("monitor needs paho-mqtt: pip install 'edge-audio[device]'") from None
    try:
        return new_client(paho, cfg, "", _password(args) if cfg.username else None, reconnect=True)
    except ConfigError as exc:  # a file the TLS library refuses
        raise InputError(str(exc)) from None


def _password(args) -> str | None:
    if not args.password_file:
        return None
    from ..core.files import read_text
    return read_text(args.password_file, "password file", InputError).strip()


class Watch:
    """The subscriptions, and every message on them printed as it arrives: one line each, or one JSON object."""

    def __init__(self, args, topics: list[str]):
        self.args = args
        self.topics = topics
        self.seen = 0
        self.problem = ""
        self.done = threading.Event()

    def on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self.problem = f"broker refused the connection: {reason_code}"
            self.done.set()
            return
        for t in self.topics:
            client.subscribe(t, qos=1)

    def on_message(self, client, userdata, msg):
        device_id, source, kind = Topics.parse(msg.topic, self.args.prefix)
        if kind.startswith("clips/"):  # a clip's audio (mqtt.clips): its size, never its bytes
            line = self.clip_line(msg.topic, _who(device_id, source), kind.removeprefix("clips/"), len(msg.payload),
                                  bool(msg.retain))
        else:
            line = self.line(msg.topic, msg.payload.decode("utf-8", "replace"), bool(msg.retain))
        print(line, flush=True)
        self.seen += 1
        if self.args.count and self.seen >= self.args.count:
            self.done.set()

    def line(self, topic: str, text: str, retained: bool) -> str:
        if self.args.json:
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            return json.dumps({"topic": topic, "retained": retained, "payload": body})
        device_id, source, kind = Topics.parse(topic, self.args.prefix)
        if kind == "events":
            event = event_line(text)
            if event is not None:
                return event
        who = _who(device_id, source)
        if kind.startswith("state/"):
            return f"{'':24}  {who:<12} state {kind.removeprefix('state/')} = {text}"
        return f"{'':24}  {who:<12} {kind} {text}"

    def clip_line(self, topic: str, who: str, event_id: str, size: int, retained: bool) -> str:
        if self.args.json:
            return json.dumps({"topic": topic, "retained": retained, "clip": event_id, "bytes": size})
        return f"{'':24}  {who:<12} clip {event_id}: {size} bytes"

    def wait(self, timeout_s: float) -> None:
        """Until --count messages came, the broker refused, `timeout_s` passed (0: no limit) or Ctrl-C."""
        deadline = time.monotonic() + timeout_s if timeout_s else None
        try:
            while not self.done.is_set():
                if deadline and time.monotonic() > deadline:
                    break
                self.done.wait(0.2)
        except KeyboardInterrupt:
            pass


def event_line(text: str) -> str | None:
    """An event payload as one line (when, device, start or end, label, peak, how long); None for one that is
    not an event of this schema (printed as it came)."""
    try:
        e = Event.from_dict(json.loads(text))
    except ValueError:
        return None
    when = iso(e.end_ts if e.type == "end" and e.end_ts is not None else e.start_ts)
    extra = f" peak {e.peak_score:.2f}" + (f" for {e.duration_s:.1f} s" if e.type == "end" else "")
    clip = f", clip {e.clip.get('status')}" if e.clip else ""  # kept, withheld: speech, ...
    return f"{when}  {_who(e.device_id, e.source):<12} {e.type:<5} {e.label}{extra}" + \
        (" (cut short)" if e.cut_short else "") + clip


def _who(device_id: str, source: str) -> str:
    """The device, and the source that heard it when the device has named sources ("pi/kitchen")."""
    return f"{device_id}/{source}" if source else device_id


def add_parser(sub) -> None:
    p = add_command(sub, "monitor", "print events and status from a broker",
                    "Subscribe to a broker and print the events, status and state of one device or all of them (and of "
                    "each of their sources).",
                    ["edge-audio monitor --host broker.lan --device kitchen"])
    p.add_argument("--host", default=MQTT.host, help=f"broker host (default: {MQTT.host})")
    p.add_argument("--port", type=int, default=MQTT.port, help=f"broker port (default: {MQTT.port})")
    p.add_argument("--prefix", default=MQTT.prefix, help=f"topic prefix (default: {MQTT.prefix})")
    p.add_argument("--device", help="device id (default: all devices)")
    p.add_argument("--username")
    p.add_argument("--password-file", metavar="FILE", help="file holding the password (never on the command line)")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--ca-file", metavar="FILE", help="CA certificate to trust")
    p.add_argument("--cert-file", metavar="FILE", help="client certificate, for a broker that asks for one (with "
                   "--key-file; implies --tls)")
    p.add_argument("--key-file", metavar="FILE", help="the client certificate's private key")
    p.add_argument("--protocol", choices=config_key(MqttConfig, "protocol")["choices"], default=MQTT.protocol,
                   help=f"MQTT protocol version (default: {MQTT.protocol})")
    p.add_argument("--metrics", action="store_true", help="also print metrics")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--count", type=int, default=0, help="exit after this many messages")
    p.add_argument("--timeout", type=float, default=0.0, help="exit after this many seconds")
    p.set_defaults(func=cmd_monitor)


def cmd_monitor(args) -> int:
    in_bounds("--port", args.port, MqttConfig, "port")
    if args.count < 0 or args.timeout < 0:
        raise InputError("--count and --timeout must not be negative")
    return run_monitor(args)
