"""`python -m tools recorder-bench`: the recorder under load, through a real broker, on SQLite and PostgreSQL.

    the load      DEVICES simulated devices in PUBLISHERS processes (recorderload.py), each a paho client at QoS 1,
                  publishing schema-1 event messages (a start, then the same event's end) at a steady offered rate,
                  metrics every 5 s a device, and their status; every message carries its publish time
    the recorder  per engine, a Mosquitto started here and the real `edge-audio recorder --http none --db URL`
                  (its memory read from /proc), on SQLite (a file in a temporary folder: WAL, the store's own
                  settings), then on PostgreSQL when this machine can start one (tools/rig/postgres.py, with fsync and
                  synchronous_commit as a server has them by default)
    a step        the offered rate (event messages a second) for SECONDS; over the steady window after WARMUP: the
                  rate stored (event messages received for storing in the window, per second) and the time from
                  publish to the recorder taking the message to store it (received_ts; the row is committed in the
                  same call, before the acknowledgement), p50/p99/max; messages not stored once the step drained are
                  lost (Mosquitto drops what queues past its max_queued_messages, 1000 by default)
    the steps     RATES in turn until one is not kept up (a loss, a p99 of a second or more, or under 98 % of the
                  offered rate stored)
    memory        the recorder's RSS after the first step and after the last, and the growth per 10k event messages
                  stored between the two

"Events" here are event messages (edge.core.events.Event: a start or an end, one row of the store's messages table);
a start and its end make one joined row of its events table, half as many. The figures go to
out/bench/recorder_bench.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from edge.app.command import add_command, sayer
from tools.rig.ports import RigError

say = sayer("recorder-bench")

RATES = (500, 1000, 2000, 3000, 4500)
TARGET_RATE = 2000.0  # event messages a second into SQLite...
TARGET_P99_S = 1.0  # ...with a p99 from publish to stored under this
KEEP_UP_SHARE = 0.98  # a step is kept up when at least this share of the offered rate is stored
MAX_GROWTH_MIB_PER_10K = 0.5  # "does not grow": under 50 bytes an event message


# -- the calculations (pure) ---------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the two nearest ranks (numpy's default); 0.0 for none."""
    if not values:
        return 0.0
    v = sorted(values)
    at = (len(v) - 1) * q / 100.0
    lo = int(at)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (at - lo)


def step_figures(pairs: list[tuple[float, float]], start_at: float, seconds: float, warmup_s: float,
                 published: int, stored_total: int, expected_total: int) -> dict:
    """A step's figures from (publish ts, received ts) of its stored event messages: the rate stored over the
    steady window [start_at + warmup_s, start_at + seconds), the publish -> stored latencies of the messages
    published in it, and how many of the step's messages the store is missing."""
    w0, w1 = start_at + warmup_s, start_at + seconds
    in_window = sum(1 for _, r in pairs if w0 <= r < w1)
    latencies = [r - p for p, r in pairs if w0 <= p < w1]
    return {"published": published, "stored_per_s": in_window / (w1 - w0), "window_s": w1 - w0,
            "latency_n": len(latencies), "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99),
            "max_s": max(latencies, default=0.0), "lost": max(0, expected_total - stored_total)}


def kept_up(fig: dict, offered: float) -> bool:
    return fig["lost"] == 0 and fig["p99_s"] < TARGET_P99_S and fig["stored_per_s"] >= KEEP_UP_SHARE * offered


def growth_per_10k(rss_start: float, rss_end: float, stored_start: int, stored_end: int) -> float:
    """MiB of RSS gained per 10,000 event messages stored between two samples."""
    n = stored_end - stored_start
    return (rss_end - rss_start) * 10000.0 / n if n > 0 else 0.0


def rate_verdict(engines: dict) -> tuple[bool, str]:
    """Target 1 on the SQLite steps: a step offering at least TARGET_RATE kept up (p99 under TARGET_P99_S)."""
    if "sqlite" not in engines:
        return False, "not measured (SQLite was not run)"
    steps = engines["sqlite"]["steps"]
    good = [s for s in steps if s["offered"] >= TARGET_RATE and s["kept_up"]]
    if good:
        s = good[0]
        return True, (f"{s['offered']:g} ev/s offered, {s['stored_per_s']:.0f} stored/s, p99 {s['p99_s']:.3f} s")
    best = max((s for s in steps if s["kept_up"]), key=lambda s: s["offered"], default=None)
    tried = [s for s in steps if s["offered"] >= TARGET_RATE]
    said = f"best kept up: {best['offered']:g} ev/s" if best else "no step kept up"
    if tried:
        t = tried[0]
        said += (f"; at {t['offered']:g} ev/s: {t['stored_per_s']:.0f} stored/s, p99 {t['p99_s']:.3f} s, "
                 f"lost {t['lost']}")
    return False, said


def memory_verdict(engines: dict) -> tuple[bool, str]:
    """Target 2: on every engine measured, RSS grew by under MAX_GROWTH_MIB_PER_10K per 10k stored."""
    parts, ok = [], True
    for name, e in engines.items():
        m = e.get("memory")
        if not m:
            continue
        ok &= m["growth_mib_per_10k"] < MAX_GROWTH_MIB_PER_10K
        parts.append(f"{name}: {m['rss_start_mib']:.1f} -> {m['rss_end_mib']:.1f} MiB over "
                     f"{m['stored_between']} event messages, {m['growth_mib_per_10k']:+.2f} MiB per 10k")
    return (ok and bool(parts)), "; ".join(parts) or "not measured"


# -- one engine ----------------------------------------------------------------------------------------------------
def run_engine(name: str, url: str, work: Path, args) -> dict:
    from tools.bench.recorderload import Publishers, Reader, RecorderInProcess, RecorderProcess
    from tools.rig.broker import Broker
    broker = Broker(work / f"broker-{name}")
    recorder = pubs = reader = None
    try:
        kind = RecorderInProcess if args.in_process else RecorderProcess
        recorder = kind(broker.port, url, work, name)
        reader = Reader(url)
        pubs = Publishers(broker.port, args.devices, args.publishers)
        rss_idle = recorder.rss_mib()
        say(f"{name}: recorder {'in this process' if args.in_process else f'pid {recorder.pid}'} "
            f"(RSS {rss_idle:.1f} MiB), {args.devices} devices in {args.publishers} publisher processes")
        steps, samples, expected = [], [], 0
        for rate in args.rates:
            step = run_step(pubs, reader, rate, expected, args)
            expected += step["published"]
            samples.append((reader.messages(), recorder.rss_mib()))
            step["rss_mib"] = samples[-1][1]
            steps.append(step)
            print(step_line(name, step), flush=True)
            if not step["kept_up"]:
                break
        code = recorder.stop()
        recorder = None
        result = {"url": url if name == "sqlite" else "postgresql (started here)", "rss_idle_mib": rss_idle,
                  "steps": steps, "exit": code, "metrics_rows": reader.metrics()}
        if len(samples) >= 2:
            (s0, r0), (s1, r1) = samples[0], samples[-1]
            result["memory"] = {"rss_start_mib": r0, "rss_end_mib": r1, "stored_start": s0, "stored_end": s1,
                                "stored_between": s1 - s0, "growth_mib_per_10k": growth_per_10k(r0, r1, s0, s1)}
        return result
    finally:
        if pubs is not None:
            pubs.close()
        if recorder is not None:
            recorder.stop()
        if reader is not None:
            reader.close()
        broker.stop()


def run_step(pubs, reader, rate: float, expected_before: int, args) -> dict:
    start_at, pub = pubs.step(rate, args.seconds)
    expected = expected_before + pub["events"]
    drained, stored = drain(reader, expected, args.drain)
    fig = step_figures(reader.stored_since(start_at - 1.0), start_at, args.seconds, args.warmup, pub["events"],
                       stored, expected)
    fig.update(offered=float(rate), kept_up=kept_up(fig, rate), drained=drained,
               metrics_published=pub["metrics"], publisher_max_late_s=pub["max_late_s"],
               publisher_unacked=pub["unacked"])
    return fig


def drain(reader, expected: int, limit_s: float, still_s: float = 1.0) -> tuple[bool, int]:
    """Wait until the store holds `expected` event messages, or holds no more than `still_s` ago (the rest were
    lost), at most `limit_s`: (all there, how many there are)."""
    deadline, last, since = time.monotonic() + limit_s, -1, time.monotonic()
    while (n := reader.messages()) < expected and time.monotonic() < deadline:
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= still_s:
            break
        time.sleep(0.1)
    return n >= expected, n


def step_line(name: str, s: dict) -> str:
    late = f", publishers up to {s['publisher_max_late_s']:.2f} s behind" if s["publisher_max_late_s"] > 0.5 else ""
    return (f"  {name:10s} {s['offered']:5.0f} ev/s offered: {s['stored_per_s']:6.0f} stored/s "
            f"({s['stored_per_s'] / 2:5.0f} joined events/s), publish->stored p50 {s['p50_s'] * 1000:6.1f} ms "
            f"p99 {s['p99_s'] * 1000:7.1f} ms max {s['max_s'] * 1000:7.1f} ms, lost {s['lost']}, "
            f"RSS {s['rss_mib']:.1f} MiB: {'kept up' if s['kept_up'] else 'NOT kept up'}{late}")


# -- the run -------------------------------------------------------------------------------------------------------
def run(args) -> int:
    from tools.rig.postgres import Postgres, have_postgres
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engines: dict = {}
    skipped: dict = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="recorder-bench-") as tmp:
        work = Path(tmp)
        say(f"steps of {args.seconds:g} s (the first {args.warmup:g} s not counted) at "
            f"{', '.join(f'{r:g}' for r in args.rates)} event messages/s offered")
        if "sqlite" in args.engines:
            engines["sqlite"] = run_engine("sqlite", f"sqlite:///{work / 'recorder.db'}", work, args)
        if "postgresql" in args.engines:
            why = have_postgres()
            pg = None
            try:
                if not why:
                    pg = Postgres(fsync=True).start()
            except RigError as exc:
                why = str(exc)
            if why:
                skipped["postgresql"] = why
                print(f"  postgresql skipped: {why}", flush=True)
            else:
                try:
                    engines["postgresql"] = run_engine("postgresql", pg.url, work, args)
                finally:
                    pg.stop()
    result = {"devices": args.devices, "publishers": args.publishers, "seconds": args.seconds,
              "warmup_s": args.warmup, "rates": args.rates, "engines": engines, "skipped": skipped,
              "wall_s": time.monotonic() - t0}
    result["verdicts"] = verdicts(result)
    (out / "recorder_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    for line in report(result):
        print(line)
    say(f"results in {out / 'recorder_bench.json'}")
    return 0 if all(e["exit"] == 0 for e in engines.values()) else 1


def verdicts(result: dict) -> dict:
    rate_ok, rate_said = rate_verdict(result["engines"])
    mem_ok, mem_said = memory_verdict(result["engines"])
    return {"rate": {"met": rate_ok, "said": rate_said}, "memory": {"met": mem_ok, "said": mem_said}}


def report(result: dict) -> list[str]:
    v = result["verdicts"]
    lines = []
    for name, e in result["engines"].items():
        m = e.get("memory")
        if m:
            lines.append(f"{name}: recorder RSS {m['rss_start_mib']:.1f} MiB after the first step, "
                         f"{m['rss_end_mib']:.1f} MiB after the last ({m['stored_between']} event messages stored "
                         f"between: {m['growth_mib_per_10k']:+.2f} MiB per 10k); {e['metrics_rows']} metrics rows")
    lines.append(f"target: at least 2,000 events per second into SQLite with a p99 under one second: "
                 f"{'met' if v['rate']['met'] else 'NOT met'} ({v['rate']['said']})")
    lines.append(f"target: memory does not grow with the number of events stored (under "
                 f"{MAX_GROWTH_MIB_PER_10K:g} MiB per 10k): {'met' if v['memory']['met'] else 'NOT met'} "
                 f"({v['memory']['said']})")
    return lines


def add_parser(sub) -> None:
    p = add_command(sub, "recorder-bench", "the recorder under load: events per second, p99 publish->stored, memory",
                    "Start Mosquitto and the real `edge-audio recorder` (SQLite, then PostgreSQL when one can be "
                    "started), have a few hundred simulated devices publish events and metrics at QoS 1 at "
                    "rising offered rates, and measure per step the event messages stored a second, the p99 time "
                    "from publish to stored row, and the recorder's memory as rows accumulate.",
                    ["python -m tools recorder-bench", "python -m tools recorder-bench --engines sqlite --profile"])
    p.add_argument("--devices", type=int, default=300, help="simulated devices (default: %(default)s)")
    p.add_argument("--publishers", type=int, default=3, help="publisher processes (default: %(default)s)")
    p.add_argument("--rates", type=_floats, default=list(RATES), help="offered event messages a second, one step "
                   "each (default: 500,1000,2000,3000,4500)")
    p.add_argument("--seconds", type=float, default=10.0, help="a step's length (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=2.0, help="a step's first seconds, not counted (default: "
                   "%(default)s)")
    p.add_argument("--drain", type=float, default=8.0, help="seconds a step waits for the store to catch up "
                   "(default: %(default)s)")
    p.add_argument("--engines", type=lambda s: [x for x in s.split(",") if x], default=["sqlite", "postgresql"],
                   help="sqlite, postgresql or both (default: sqlite,postgresql)")
    p.add_argument("--in-process", action="store_true", help="an in-process Ingest instead of the command")
    p.add_argument("--profile", action="store_true", help="instead: cProfile an in-process Ingest on SQLite at "
                   "the highest rate (where the recorder's time goes)")
    p.add_argument("--out", default="out/bench", help="where the result JSON goes (default: %(default)s)")
    p.set_defaults(func=cmd)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def cmd(args) -> int:
    from edge.core.errors import InputError
    if not 1 <= args.devices <= 10000 or not 1 <= args.publishers <= 16 or not args.rates \
            or any(r <= 0 for r in args.rates) or not 0 <= args.warmup < args.seconds:
        raise InputError("--devices 1-10000, --publishers 1-16, --rates above 0, --warmup in [0, --seconds)")
    bad = [e for e in args.engines if e not in ("sqlite", "postgresql")]
    if bad or not args.engines:
        raise InputError(f"--engines: {', '.join(bad) or 'none given'}: choose from sqlite, postgresql")
    try:
        if args.profile:
            from tools.bench.recorderprof import profile
            return profile(args)
        return run(args)
    except RigError as exc:
        raise InputError(str(exc)) from None
