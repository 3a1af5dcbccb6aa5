"""`speed`: per-invoke CPU time of several models measured side by side.

The models are loaded at once and invoked in turns (a short burst each, round after round), so a busy
machine slows them all alike and the ratio stays meaningful. Inputs are real log-mel patches or windows.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from edge.app.command import add_command
from edge.model.classifier import Classifier
from edge.core.errors import InputError

BURST = 20


def measure(models: list[str], seconds: float, threads: int = 1, warmup: int = 20) -> list[dict]:
    if not 0 < seconds <= 600:
        raise InputError(f"--seconds {seconds:g}: give a duration between 0 and 600 s")
    rng = np.random.default_rng(0)
    window = (rng.normal(0, 0.1, 15600)).astype(np.float32)
    classifiers = [Classifier.open(m, None, "cpu", threads) for m in models]
    for c in classifiers:
        c.prepare(window)  # real input: a patch from the front end, or the waveform itself
        for _ in range(warmup):
            c.invoke()
    times: list[list[float]] = [[] for _ in classifiers]
    cpu: list[float] = [0.0 for _ in classifiers]
    end = time.monotonic() + seconds
    rounds = 0
    shown = -1
    while time.monotonic() < end:
        for i, c in enumerate(classifiers):
            c0 = time.process_time()
            for _ in range(BURST):
                t0 = time.perf_counter()
                c.invoke()
                times[i].append(time.perf_counter() - t0)
            cpu[i] += time.process_time() - c0
        rounds += 1
        done = int(seconds - max(0.0, end - time.monotonic()))
        if done != shown:  # one progress line a second, not one a round
            shown = done
            print(f"  timing: round {rounds}, {done}/{seconds:g} s", file=sys.stderr, flush=True)
    out = []
    for m, c, t, cp in zip(models, classifiers, times, cpu):
        a = np.array(t) * 1000
        out.append({"model": m, "input_kind": c.input_kind, "invokes": int(a.size), "threads": threads,
                    "mean_ms": float(a.mean()), "median_ms": float(np.median(a)),
                    "p90_ms": float(np.percentile(a, 90)), "cpu_ms_per_invoke": float(cp * 1000 / a.size)})
    base = out[-1]["median_ms"]
    for o in out:
        o["vs_last"] = o["median_ms"] / base
    return out


def format_speed(rows: list[dict]) -> str:
    lines = [f"{'model':<56} {'median':>8} {'mean':>8} {'p90':>8} {'cpu':>8} {'vs last':>8}"]
    for r in rows:
        lines.append(f"{r['model'][-56:]:<56} {r['median_ms']:>7.3f}m {r['mean_ms']:>7.3f}m {r['p90_ms']:>7.3f}m "
                     f"{r['cpu_ms_per_invoke']:>7.3f}m {r['vs_last']:>7.2f}x")
    lines.append(f"ms per invoke, one interpreter each, {rows[0]['threads']} thread(s), invoked in turns "
                 f"({rows[0]['invokes']} invokes of the first); cpu = process CPU time per invoke")
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = add_command(sub, "speed", "per-invoke CPU time of models side by side (invoked in turns)",
                    "Load every model on the CPU and invoke them in turns for --seconds, so a shared machine slows "
                    "them alike; print median/mean/p90 ms per invoke and the ratio to the last model.",
                    ["python -m tools speed out/yamnet-int8 ../shared/models/coral/yamnet_spectra_in.tflite "
                     "--seconds 10"])
    p.add_argument("model", nargs="+", metavar="MODEL|BUNDLE")
    p.add_argument("--seconds", type=float, default=10.0, help="total timing time (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="CPU interpreter threads (default: 1)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_speed)


def cmd_speed(args) -> int:
    rows = measure(args.model, args.seconds, args.threads)
    print(json.dumps(rows, indent=2) if args.json else format_speed(rows))
    return 0
