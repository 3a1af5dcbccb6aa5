"""`python -m tools streams-bench`: how many sources one daemon classifies at real time on one core, what each
source costs, and the same work as separate daemons, measured in one run.

    sources   `edge-audio run` pinned to one core (as `taskset -c CPU`) with N [[sources]], each a WAV replayed at
              real time in a loop, MQTT to a Mosquitto started here, CPU delegate (--delegate), default hop, a
              board profile's detector (--detector: pi4-usb-coral's allow list, or every label watched). N
              doubles from 8 while at most 1 % of the windows the audio time makes are missed (the sources'
              missed_windows between two of the daemon's metrics payloads, after a warm-up of one metrics
              interval), then the gap to the first N that did not hold is halved twice
    per source  CPU % of a core and peak RSS at each N, RSS per extra source (RSS(N) - RSS(1)) / (N - 1); fairness
              at the largest N that held: the slowest source's p50 latency (audio there -> scores) over the fastest's
    separate  N single-source daemons beside one daemon with N sources, all running on the same core at once:
              their CPU read over the same seconds in paired rounds, and their peak RSS and PSS
    estimate  the CPU per window here less the bare invoke, scaled by the kit's Pi reference factors, plus their
              Edge TPU invoke: sources per board (ESTIMATE, not measured on a board)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.app.command import add_command, sayer
from edge.core.stream import HOP_SECONDS
from tools.rig.broker import Broker
from tools.rig.daemon import DaemonProcess, cpu_seconds, kit_env, process_peak_rss_mb, write_daemon_config
from tools.rig.mqtt import Subscriber
from tools.rig.ports import RigError, wait_until

from . import streamcalc as calc
from .daemon import BARE_INTERPRETER

say = sayer("streams-bench")

# the bare invoke on this core: what a board with an Edge TPU does not spend on its CPU
INVOKE = BARE_INTERPRETER + """
for _ in range(50):
    it.invoke()
rounds = []
for _ in range(5):
    t = time.perf_counter()
    for _ in range(200):
        it.invoke()
    rounds.append((time.perf_counter() - t) / 200 * 1e3)
print(json.dumps({"invoke_ms": sorted(rounds)[2]}))
"""


@contextlib.contextmanager
def pinned(cpu: int):
    """Children started inside inherit one CPU, as under `taskset -c CPU` (only this thread's mask changes)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _config(path: Path, port: int, device: str, n: int, args, spool: Path) -> Path:
    """A daemon config: N [[sources]] over one [audio] (a WAV at real time, in a loop); n = 0: [audio] alone."""
    audio = {"source": "wav", "file": Path(args.audio).resolve(), "realtime": True, "loop": True}
    sources = [{"id": f"s{i:03d}"} for i in range(n)] or None
    return write_daemon_config(
        path, device={"id": device}, audio=audio, model={"path": args.model, "delegate": args.delegate,
                                                         "hop_seconds": args.hop},
        detector=args.detector_table, mqtt={"host": "127.0.0.1", "port": port, "reconnect_min_seconds": 0.2,
                           "reconnect_max_seconds": 1.0, "spool_file": spool},
        metrics={"interval_seconds": args.interval}, sources=sources)


def _start(work: Path, broker: Broker, device: str, n: int, args) -> DaemonProcess:
    cfg = _config(work / f"{device}.toml", broker.port, device, n, args, work / f"{device}.db")
    with pinned(args.cpu):
        return DaemonProcess(cfg)


def _metrics(sub: Subscriber, device: str) -> list[dict]:
    return [json.loads(p) for p in sub.payloads(f"/{device}/metrics")]


def _next_metrics(sub: Subscriber, device: str, daemon: DaemonProcess, count: int, timeout_s: float) -> dict:
    """Waits for the device's metrics payload number `count` (1-based); the CPU seconds of each of the daemon's
    threads on its arrival."""
    if not wait_until(lambda: len(_metrics(sub, device)) >= count or not daemon.alive(), timeout_s, 0.01):
        raise RigError(f"no metrics payload {count} from {device} in {timeout_s:g} s: {daemon.log_tail()}")
    if not daemon.alive():
        raise RigError(f"{device} stopped: {daemon.log_tail()}")
    return task_cpu_seconds(daemon.pid)


def task_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each live thread of a process, by thread id (/proc/PID/task/*/schedstat)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return out


def measure(args, work: Path, broker: Broker, n: int) -> dict:
    """One daemon with N sources on one core: the span between the metrics payload after the warm-up and the first
    one `--seconds` later (windows, missed, CPU by thread), its peak RSS, and the fairness of the last payload. A
    daemon whose metrics do not reach the broker in time does not hold (`failed` says why)."""
    device = f"streams{n}"
    sub = Subscriber(broker.port, (f"edge-audio/{device}/metrics", f"edge-audio/{device}/status"))
    daemon = _start(work, broker, device, n, args)
    try:
        if not sub.wait_for(f"{device}/status", b"online", 60 + n / 2):
            raise RigError(f"{device} did not come online: {daemon.log_tail()}")
        k = 1 + max(1, round(args.seconds / args.interval))
        try:
            c0 = _next_metrics(sub, device, daemon, 1, 3 * args.interval + 30)
            c1 = _next_metrics(sub, device, daemon, k, (k + 2) * args.interval + 30)
        except RigError as exc:
            say(f"N = {n}: does not hold: {exc}")
            return {"n": n, "holds": False, "failed": str(exc)[:300]}
        pid, rss = daemon.pid, process_peak_rss_mb(daemon.pid)
        got = _metrics(sub, device)
        first, last = got[0], got[k - 1]
    finally:
        code = daemon.stop()
        sub.close()
    s = calc.span(first, last, args.hop)
    threads = calc.thread_split(c0, c1, pid, n, s["seconds"])
    result = {"n": n, "holds": s["missed_fraction"] <= calc.MISSED_MAX, "span": s, "cpu_s": threads["cpu_s"],
              "cpu_percent": threads["percent"]["all"], "threads_percent": threads["percent"],
              "peak_rss_mib": round(rss, 2), "fairness": calc.fairness(last), "exit": code}
    f = result["fairness"]
    say(f"N = {n}: missed {s['missed_windows']} of {s['expected_windows']:.0f} windows "
        f"({100 * s['missed_fraction']:.2f} %), CPU {result['cpu_percent']:.1f} % of a core, peak RSS {rss:.1f} MiB, "
        f"p50 latency {f['fastest_p50_ms']:.1f}-{f['slowest_p50_ms']:.1f} ms" + ("" if result["holds"] else
                                                                                ": does not hold"))
    return result


def detector_table(name: str) -> dict:
    """The [detector] table every source runs with: a board profile's ('all': the defaults, every label watched)."""
    if name == "all":
        return {}
    import tomllib
    from edge import firmware
    return tomllib.loads(firmware.profile_text(name)).get("detector", {})


def separate(args, work: Path, broker: Broker, n: int) -> dict:
    """N single-source daemons and one daemon with N sources, all on the same core at once: CPU over the same
    seconds in paired rounds, then the peak RSS and PSS of both sides."""
    devices = [f"single{i}" for i in range(n)]
    sub = Subscriber(broker.port, tuple(f"edge-audio/{d}/status" for d in [*devices, "multi"]))
    procs: list[DaemonProcess] = []
    try:
        procs.append(_start(work, broker, "multi", n, args))
        procs.extend(_start(work, broker, d, 0, args) for d in devices)
        for d, p in zip(["multi", *devices], procs):
            if not sub.wait_for(f"{d}/status", b"online", 90):
                raise RigError(f"{d} did not come online: {p.log_tail()}")
        time.sleep(args.interval)
        one, many = procs[0], procs[1:]
        rounds = []
        for r in range(args.rounds):
            a0, b0, t0 = cpu_seconds(one.pid), sum(cpu_seconds(p.pid) for p in many), time.monotonic()
            time.sleep(args.round_seconds)
            a1, b1, t1 = cpu_seconds(one.pid), sum(cpu_seconds(p.pid) for p in many), time.monotonic()
            rounds.append((100 * (b1 - b0) / (t1 - t0), 100 * (a1 - a0) / (t1 - t0)))
            say(f"round {r + 1}/{args.rounds}: {n} daemons {rounds[-1][0]:.1f} %, one daemon with {n} sources "
                f"{rounds[-1][1]:.1f} % of a core")
        if not all(p.alive() for p in procs):
            raise RigError("a daemon stopped during the rounds: " + next(p.log_tail() for p in procs if not p.alive()))
        rss_one, rss_many = process_peak_rss_mb(one.pid), sum(process_peak_rss_mb(p.pid) for p in many)
        pss_one, pss_many = pss_mib(one.pid), sum(pss_mib(p.pid) for p in many)
    finally:
        for p in procs:
            p.stop()
        sub.close()
    from edge.bench.measure import ratio_stats
    return {"n": n, "seconds": args.round_seconds, "cpu_rounds": [{"separate": a, "one": b} for a, b in rounds],
            "cpu_separate_percent": statistics.median(a for a, _ in rounds),
            "cpu_one_percent": statistics.median(b for _, b in rounds), "cpu_ratio": ratio_stats(rounds),
            "rss_separate_mib": round(rss_many, 1), "rss_one_mib": round(rss_one, 1),
            "rss_ratio": round(rss_many / rss_one, 2), "pss_separate_mib": round(pss_many, 1),
            "pss_one_mib": round(pss_one, 1), "pss_ratio": round(pss_many / pss_one, 2)}


def pss_mib(pid: int) -> float:
    """Proportional set size: resident memory with each shared page split between the processes mapping it."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024.0
    raise RigError(f"no Pss for process {pid}")


def bare_invoke_ms(cpu_model: Path, cpu: int) -> float:
    with pinned(cpu):
        res = subprocess.run([sys.executable, "-c", INVOKE, str(cpu_model)], capture_output=True, text=True,
                             timeout=300, env=kit_env())
    if res.returncode != 0:
        raise RigError(f"the bare invoke process failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(res.stdout)["invoke_ms"]


def run(args) -> int:
    from edge.model.bundle import default_bundle_path, resolve_model
    args.model = args.model or str(default_bundle_path())
    cpu_model = resolve_model(args.model, None).models.cpu  # bad model: one line, exit 2, before anything starts
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="streams-bench-", dir=out))
    broker = Broker(work / "broker")
    try:
        invoke = bare_invoke_ms(cpu_model, args.cpu)
        say(f"bare invoke on CPU {args.cpu}: {invoke:.3f} ms")
        base = measure(args, work, broker, 1)
        best, runs = calc.search(lambda n: measure(args, work, broker, n), args.start, args.limit, args.bisect)
        sep = separate(args, work, broker, args.separate) if args.separate > 1 else None
    finally:
        broker.stop()
    runs = [base, *runs]
    result = assemble(args, str(cpu_model), invoke, best, runs, sep)
    (out / "streams.json").write_text(json.dumps(result, indent=2) + "\n")
    for line in calc.lines(result):
        print(line)
    say(f"results in {out / 'streams.json'}")
    return 0


def assemble(args, cpu_model: str, invoke_ms: float, best: int, runs: list[dict], sep: dict | None) -> dict:
    """The result (out/bench/streams.json): every run, the per-source rows, the separate daemons, the estimate."""
    held = [r for r in runs if r["holds"]]
    top = max(held, key=lambda r: r["n"]) if held else None
    cost = dict(calc.window_cost_ms(top, invoke_ms), n=top["n"]) if top else None
    return {"audio": args.audio, "model": cpu_model, "delegate": args.delegate, "detector": args.detector,
            "hop_s": args.hop, "cpu": args.cpu, "seconds": args.seconds, "interval_s": args.interval,
            "missed_max": calc.MISSED_MAX, "targets": calc.TARGETS, "limit": args.limit, "max_sources": best,
            "runs": runs, "per_source": calc.per_source(runs), "separate": sep, "cost": cost,
            "estimate": calc.estimate(cost["rest_ms_per_window"], cost["windows_per_source_s"],
                                      min(1.0, top["cpu_percent"] / 100)) if cost else None}


def add_parser(sub) -> None:
    p = add_command(sub, "streams-bench", "how many sources one daemon classifies at real time on one core",
                    __doc__.split("\n\n", 1)[1],
                    ["python -m tools streams-bench --audio out/audio/speech_whistling2.wav",
                     "python -m tools streams-bench --start 16 --limit 64 --separate 4 --seconds 10"])
    p.add_argument("--model", metavar="BUNDLE|TFLITE", help="model (default: the installed bundle)")
    p.add_argument("--audio", default="out/audio/speech_whistling2.wav", help="WAV every source replays "
                                                                             "(default: %(default)s)")
    p.add_argument("--cpu", type=int, default=0, help="the core the daemons are pinned to (default: %(default)s)")
    p.add_argument("--start", type=int, default=8, help="first N of the search (default: %(default)s)")
    p.add_argument("--limit", type=int, default=256, help="largest N tried (default: %(default)s, the config's "
                                                          "most)")
    p.add_argument("--bisect", type=int, default=2, help="halvings after the first N that does not hold "
                                                         "(default: %(default)s)")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds measured per N (default: %(default)s)")
    p.add_argument("--interval", type=float, default=5.0, help="the daemon's metrics interval, also the warm-up "
                                                               "(default: %(default)s)")
    p.add_argument("--separate", type=int, default=8, help="N of the separate daemons comparison; 0: none "
                                                           "(default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="paired rounds of that comparison (default: %(default)s)")
    p.add_argument("--round-seconds", type=float, default=6.0, help="seconds per round (default: %(default)s)")
    p.add_argument("--delegate", default="cpu", help="the daemons' [model] delegate: cpu here, auto on a board with "
                                                     "a Coral (default: %(default)s)")
    p.add_argument("--detector", default="pi4-usb-coral", metavar="PROFILE|all",
                   help="the [detector] of a board profile every source runs with, or 'all': every label watched "
                        "(default: %(default)s)")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help=argparse.SUPPRESS)
    p.add_argument("--out", default="out/bench", help="where streams.json goes (default: %(default)s)")
    p.set_defaults(func=cmd)


def cmd(args) -> int:
    from edge.core.errors import InputError
    from edge.sourceconfig import MAX_SOURCES
    if not 1 <= args.start <= args.limit <= MAX_SOURCES or not 0 <= args.bisect <= 10:
        raise InputError(f"--start and --limit: 1 <= start <= limit <= {MAX_SOURCES}; --bisect 0-10")
    if not 1 <= args.interval <= 60 or not args.interval <= args.seconds <= 600 or not 1 <= args.rounds <= 50 \
            or not 0 < args.round_seconds <= 600 or not 0 <= args.separate <= 64:
        raise InputError("--interval 1-60 s, --seconds interval-600, --rounds 1-50, --round-seconds (0, 600], "
                         "--separate 0-64")
    if args.cpu not in os.sched_getaffinity(0):
        raise InputError(f"--cpu {args.cpu}: not a core this process may use ({sorted(os.sched_getaffinity(0))})")
    if not Path(args.audio).is_file():
        raise InputError(f"--audio {args.audio}: not found (python -m tools fetch samples --dest out/audio)")
    args.detector_table = detector_table(args.detector)  # not a profile: one line naming those there are
    try:
        return run(args)
    except RigError as exc:
        raise InputError(str(exc)) from None
