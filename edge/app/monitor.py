"""`edge-audio monitor`: watch events and status of one or all devices on a broker."""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time

from ..core.errors import InputError
from ..sinks.topics import Topics


def run_monitor(args) -> int:
    try:
        import paho.mqtt.client as paho
    except ImportError:
        raise InputError("monitor needs paho-mqtt: pip install 'edge-audio[device]'") from None
    topics = Topics(args.prefix, args.device or "+").subscriptions(metrics=args.metrics)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    if args.username:
        password = None
        if args.password_file:
            try:
                password = open(args.password_file).read().strip()
            except OSError as exc:
                raise InputError(f"{args.password_file}: {exc.strerror}") from None
        client.username_pw_set(args.username, password)
    if args.tls or args.ca_file:
        client.tls_set(ca_certs=args.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
    seen = 0
    done = threading.Event()
    problem: list[str] = []

    def on_connect(c, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            problem.append(f"broker refused the connection: {reason_code}")
            done.set()
            return
        for t in topics:
            c.subscribe(t, qos=1)

    def on_message(c, userdata, msg):
        nonlocal seen
        device_id, kind = Topics.parse(msg.topic)
        text = msg.payload.decode("utf-8", "replace")
        if args.json:
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            print(json.dumps({"topic": msg.topic, "retained": bool(msg.retain), "payload": body}), flush=True)
        elif msg.topic.endswith("/events"):
            e = json.loads(text)
            extra = f" peak {e['peak_score']:.2f}" + (f" for {e['duration_s']:.1f} s" if e["type"] == "end" else "")
            print(f"{e['start_time'] if e['type'] == 'start' else e['end_time']}  {e['device_id']:<12} "
                  f"{e['type']:<5} {e['label']}{extra}", flush=True)
        elif "/state/" in msg.topic:
            print(f"{'':24}  {device_id:<12} state {kind} = {text}", flush=True)
        else:
            print(f"{'':24}  {device_id:<12} {kind} {text}", flush=True)
        seen += 1
        if args.count and seen >= args.count:
            done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(args.host, args.port, 30)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"cannot connect to {args.host}:{args.port}: {exc}") from None
    client.loop_start()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while not done.is_set():
            if deadline and time.monotonic() > deadline:
                break
            done.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
    if problem:
        raise InputError(problem[0])
    if args.count and seen < args.count:
        print(f"edge-audio monitor: timed out after {seen} of {args.count} messages", file=sys.stderr)
        return 1
    return 0
