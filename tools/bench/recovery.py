"""`python -m tools recovery-bench`: how soon after a broker outage the backlog is delivered.

Each round: the MQTT sink (the daemon's own, default back-off) is connected to a Mosquitto started here, the broker
is killed, events are produced all through the outage, the broker starts again, and the time from its return to
the last event acknowledged is measured (and to the last one a persistent subscriber received). Rounds run one
after another in one process; the figure is their median and range.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from edge.app.command import add_command, sayer
from edge.config import parse_config
from edge.core.errors import InputError
from edge.core.events import Event
from tools.rig.broker import Broker
from tools.rig.daemon import daemon_config_text
from tools.rig.mqtt import Subscriber
from tools.rig.ports import wait_until

say = sayer("recovery-bench")


def _event(i: int, device: str) -> Event:
    return Event("start", f"backlog-{i}", "Dog", 69, 1_764_500_000.0 + i, None, 0.9, 0.8, 0.0, -20.0, device)


def one_round(broker: Broker, outage_s: float, count: int, n: int) -> dict:
    """One outage of `outage_s` with `count` events spread over it: seconds from the broker's return to the last
    acknowledgement and to the subscriber's last message, and the event ids in the order the subscriber got them."""
    from edge.sinks.mqtt import MqttSink
    device = f"back{n}"
    cfg = parse_config(daemon_config_text(device={"id": device}, mqtt={
        "host": "127.0.0.1", "port": broker.port, "spool_file": "none", "homeassistant": False})).mqtt
    sub = Subscriber(broker.port, topics=(f"edge-audio/{device}/events",), session=f"watcher-{device}")
    sink = MqttSink(cfg, device, watched=["Dog"])
    sink.start()
    try:
        if not wait_until(lambda: sink.connected, 10):
            raise InputError("the sink did not connect to the broker started here")
        broker.save()
        broker.kill()
        down = time.monotonic()
        for i in range(count):
            sink.publish_event(_event(i, device))
            sink.flush()
            time.sleep(max(0.0, down + (i + 1) * outage_s / count - time.monotonic()))
        broker.start()
        back = time.monotonic()
        if not wait_until(lambda: sink.health()["delivered_events"] == count, 120):
            raise InputError(f"the backlog was not delivered within 120 s: {sink.health()}")
        acked = time.monotonic() - back
        sub.wait(lambda s: len({e["event_id"] for e in s.events()}) == count, 30)
        received = max(m.at for m in sub.received()) - back
        order = list(dict.fromkeys(e["event_id"] for e in sub.events()))
    finally:
        sink.stop(2.0)
        sub.close()
    return {"acked_s": round(acked, 2), "received_s": round(received, 2), "received": order,
            "reconnect_max_seconds": cfg.reconnect_max_seconds}


def cmd(args) -> int:
    if not 1 <= args.rounds <= 20 or not 1 <= args.outage <= 600 or not 1 <= args.events <= 10_000:
        raise InputError("--rounds 1-20, --outage 1-600 s, --events 1-10000")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="edge-audio-recovery-") as tmp:
        broker = Broker(Path(tmp), persistence=True)
        try:
            for n in range(args.rounds):
                r = one_round(broker, args.outage, args.events, n)
                rounds.append(r)
                say(f"round {n + 1}/{args.rounds}: backlog of {args.events} acknowledged {r['acked_s']:.1f} s after "
                    f"the broker was back (at the subscriber {r['received_s']:.1f} s)")
        finally:
            broker.stop()
    acked = [r["acked_s"] for r in rounds]
    print(f"broker back -> backlog delivered after a {args.outage:g} s outage: median {statistics.median(acked):.1f} s "
          f"(range {min(acked):.1f}-{max(acked):.1f}, {len(acked)} rounds of {args.events} events; "
          f"reconnect_max_seconds {rounds[0]['reconnect_max_seconds']:g})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recovery_bench.json").write_text(json.dumps({"outage_s": args.outage, "events": args.events,
                                                         "rounds": rounds}, indent=2) + "\n")
    return 0


def add_parser(sub) -> None:
    p = add_command(sub, "recovery-bench", "how soon after a broker outage the daemon's backlog is delivered",
                    __doc__.split("\n\n", 1)[1],
                    ["python -m tools recovery-bench --outage 60 --rounds 3"])
    p.add_argument("--outage", type=float, default=60.0, metavar="S", help="seconds the broker is down "
                                                                          "(default: %(default)s)")
    p.add_argument("--events", type=int, default=30, help="events produced during the outage (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="outages, one after another (default: %(default)s)")
    p.add_argument("--out", default="out/bench", help="where the result JSON goes (default: %(default)s)")
    p.set_defaults(func=cmd)
