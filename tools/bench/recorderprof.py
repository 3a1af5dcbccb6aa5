"""`python -m tools recorder-bench --profile`: where the recorder's time goes under load.

An in-process Ingest and its store (the first of --engines) take the bench's load at the highest of --rates for
--seconds, through a Mosquitto started here; cProfile runs in the client's network thread (the one thread that reads,
parses, stores and acknowledges every message), from its first message to the end. Printed: that thread's CPU time,
the share of it in the store's add_event (and within it the commits), and the functions with the most own time.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import threading
import time
from pathlib import Path

from edge.app.command import sayer

say = sayer("recorder-bench")
TOP = 22
WATCH = ("client._packet_read", "client._handle_publish", "ingest._on_message", "ingest.event", "json.loads",
         "events.from_dict", "ingest.name_problem", "store.add_event", "json.dumps", "store._tx",
         "method 'execute' of 'sqlite3.Connection' objects", "cursor.execute", "connection.transaction",
         "store.add_metrics", "ingest.ack", "client.ack", "built-in method select.select")


def profile(args) -> int:
    from tools.bench.recorderload import Publishers, RecorderInProcess
    from tools.rig.broker import Broker
    engine = args.engines[0]
    rate = max(args.rates)
    prof = cProfile.Profile()
    state = {"on": False, "off": threading.Event(), "done": threading.Event(), "cpu0": 0.0, "cpu1": 0.0}
    with tempfile.TemporaryDirectory(prefix="recorder-prof-") as tmp:
        work = Path(tmp)
        pg = _postgres() if engine == "postgresql" else None
        url = pg.url if pg else f"sqlite:///{work / 'recorder.db'}"
        broker = Broker(work / "broker")
        recorder = pubs = None
        try:
            recorder = RecorderInProcess(broker.port, url, work, engine)
            _wrap(recorder.ingest, prof, state)
            pubs = Publishers(broker.port, args.devices, args.publishers)
            say(f"profiling an in-process recorder on {engine} at {rate:g} event messages/s for {args.seconds:g} s")
            _, pub = pubs.step(rate, args.seconds)
            state["off"].set()
            state["done"].wait(10)
            stats = recorder.ingest.stats()
        finally:
            if pubs is not None:
                pubs.close()
            if recorder is not None:
                recorder.stop()
            broker.stop()
            if pg is not None:
                pg.stop()
    for line in summary(prof, state["cpu1"] - state["cpu0"], pub, stats):
        print(line)
    return 0


def _postgres():
    from tools.rig.postgres import Postgres
    return Postgres(fsync=True).start()


def _wrap(ingest, prof: cProfile.Profile, state: dict) -> None:
    """Profile the paho network thread: enabled there at its first message, disabled there once told to."""
    inner = ingest.client.on_message

    def on_message(client, userdata, msg):
        if not state["on"]:
            state["on"] = True
            state["cpu0"] = time.thread_time()
            prof.enable()
        inner(client, userdata, msg)
        if state["off"].is_set() and not state["done"].is_set():
            prof.disable()
            state["cpu1"] = time.thread_time()
            state["done"].set()

    ingest.client.on_message = on_message


def summary(prof: cProfile.Profile, thread_cpu_s: float, pub: dict, stats: dict) -> list[str]:
    st = pstats.Stats(prof)
    by_name: dict[str, list] = {}
    for (file, _, name), (_, nc, tt, ct, _) in st.stats.items():
        key = f"{Path(file).stem}.{name}" if file != "~" else name.strip("{}<>")
        row = by_name.setdefault(key, [0, 0.0, 0.0])
        row[0], row[1], row[2] = row[0] + nc, row[1] + tt, row[2] + ct
    total = st.total_tt or 1e-9
    n = stats["received"]
    lines = [f"profile: {pub['events']} event messages and {pub['metrics']} metrics published, {n} received, "
             f"{stats['stored']} rows stored; the network thread's CPU {thread_cpu_s:.2f} s while profiled, "
             f"{total:.2f} s wall in profiled functions ({1e6 * total / max(n, 1):.0f} us a message, "
             "the profiler's own cost included)"]
    for key in WATCH:
        matches = [(k, v) for k, v in by_name.items() if k == key or k.endswith(key)]
        for k, (calls, own, cum) in matches[:1]:
            lines.append(f"  {key:34s} {calls:7d} calls, cumulative {cum:6.2f} s ({100 * cum / total:4.1f} %), "
                         f"own {own:6.2f} s")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(TOP)
    body = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(body) if ln.lstrip().startswith("ncalls")), 0)
    lines.append(f"  the {TOP} functions with the most own time:")
    lines += ["    " + ln.strip() for ln in body[start:start + TOP + 1]]
    return lines
