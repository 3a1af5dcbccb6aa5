"""The arithmetic of `python -m tools streams-bench`, apart from the rig (tests/unit/test_streams_bench.py runs it
on made-up figures): the search for the largest N, what two metrics payloads say about the seconds between them,
the per-source figures, the board estimate, and the lines printed."""

from __future__ import annotations

import math
import statistics

MISSED_MAX = 0.01  # at most 1 % of the windows the audio time makes may be missed
TARGETS = {"sources": 100, "rss_per_source_mib": 1.0, "fairness": 2.0}
# The boards, from the kit's own reference figures (edge/bench/profiles/*.json, themselves estimates until a board
# is measured): `cpu_factor` scales a CPU cost measured on the x86 development machine, `invoke_ms` is the Edge TPU
# invoke of Coral's split YAMNet (yamnet_spectra_in_edgetpu.tflite) through a USB Coral.
BOARDS = {
    "Pi 4 + USB Coral": {"cpu_factor": 5.0, "invoke_ms": 1.6, "from": "edge/bench/profiles/pi4-usb-coral.json: CPU "
                         "5x the x86-dev figures (published XNNPACK int8 MobileNet v1, 24 ms on a Pi 4); Edge TPU "
                         "invoke 1.6 ms (Coral's published MobileNet v1 on a Pi 4, 4.2 ms for 569 M MACs, scaled to "
                         "YAMNet's 69 M MACs plus USB)"},
    "Pi 5 + USB Coral": {"cpu_factor": 5.0 / 2.3, "invoke_ms": 1.3, "from": "edge/bench/profiles/pi5-usb-coral.json: "
                         "the Pi 4 CPU estimate / 2.3 (Cortex-A76 at 2.4 GHz vs A72 at 1.8 GHz); Edge TPU invoke 1.3 "
                         "ms (bounded by the TPU and USB)"},
}


def search(measure, start: int = 8, limit: int = 256, bisect_steps: int = 2) -> tuple[int, list[dict]]:
    """The largest N for which measure(N)["holds"]: N doubles from `start` while it holds (up to `limit`), then
    the gap between the last N that held and the first that did not is halved `bisect_steps` times. (0, runs) when
    not even N = 1 holds. Every measure(N) result, in the order run, comes back with it."""
    runs: list[dict] = []

    def holds(n: int) -> bool:
        r = measure(n)
        runs.append(r)
        return bool(r["holds"])

    good, bad, n = 0, None, max(1, min(start, limit))
    while True:
        if holds(n):
            good = n
            if n >= limit:
                return good, runs
            n = min(2 * n, limit)
        else:
            bad = n
            break
    for _ in range(bisect_steps):
        mid = (good + bad) // 2 if good else max(1, bad // 2)
        if mid <= good or mid >= bad:
            break
        if holds(mid):
            good = mid
        else:
            bad = mid
    return good, runs


def span(first: dict, last: dict, hop_s: float) -> dict:
    """What the daemon did between two of its metrics payloads (the device's, with `sources`): windows the audio
    time makes (N x seconds / hop), windows classified (grid and onset) and missed, and the missed fraction."""
    seconds = last["uptime_s"] - first["uptime_s"]
    a, b = first["sources"], last["sources"]
    n = len(b)
    grid = sum(b[s]["windows"] - a.get(s, {}).get("windows", 0) for s in b)
    onset = sum(b[s]["onset_windows"] - a.get(s, {}).get("onset_windows", 0) for s in b)
    missed = sum(b[s]["missed_windows"] - a.get(s, {}).get("missed_windows", 0) for s in b)
    expected = n * seconds / hop_s if seconds > 0 else 0.0
    return {"sources": n, "seconds": round(seconds, 2), "expected_windows": round(expected, 1),
            "windows": grid, "onset_windows": onset, "missed_windows": missed,
            "missed_fraction": round(missed / expected, 5) if expected else 1.0,
            "classified_fraction": round(grid / expected, 4) if expected else 0.0}


def thread_split(before: dict, after: dict, pid: int, n: int, seconds: float) -> dict:
    """The daemon's CPU between two readings of its threads ({thread id: CPU s}), as % of a core: the loop (the
    main thread: scheduler, front end, invoke, detector, events), the capture threads (the N started last: reads,
    pacing, onset scan) and the others (MQTT client, spool). A thread gone by the second reading is left out."""
    delta = {t: after[t] - before.get(t, 0.0) for t in after}
    capture = set(sorted(t for t in delta if t != pid)[-n:]) if n else set()
    parts = {"loop": delta.get(pid, 0.0), "capture": sum(delta[t] for t in capture),
             "other": sum(v for t, v in delta.items() if t != pid and t not in capture)}
    total = sum(parts.values())
    pct = {k: round(100.0 * v / seconds, 2) if seconds > 0 else 0.0 for k, v in {**parts, "all": total}.items()}
    return {"cpu_s": round(total, 3), "percent": pct}


def fairness(last: dict) -> dict:
    """The slowest source's p50 latency (audio there -> scores) over the fastest's, from one metrics payload."""
    p50 = {s: p["latency_p50_ms"] for s, p in last["sources"].items()}
    slow, fast = max(p50, key=p50.get), min(p50, key=p50.get)
    ratio = round(p50[slow] / p50[fast], 2) if p50[fast] > 0 else None  # None: the fastest waited 0 ms
    return {"slowest_p50_ms": p50[slow], "fastest_p50_ms": p50[fast], "ratio": ratio,
            "median_p50_ms": round(statistics.median(p50.values()), 2),
            "worst_p99_ms": max(p["latency_p99_ms"] for p in last["sources"].values())}


def per_source(runs: list[dict]) -> list[dict]:
    """CPU % of a core per source and peak RSS per extra source, (RSS(N) - RSS(1)) / (N - 1), for every N measured
    beside N = 1 (the smallest N's run stands for N = 1 when there is no N = 1 run). Runs that measured nothing
    (their metrics never arrived) are left out."""
    runs = [r for r in runs if "cpu_percent" in r]
    if not runs:
        return []
    base = min(runs, key=lambda r: r["n"])
    rows = []
    for r in sorted(runs, key=lambda r: r["n"]):
        row = {"n": r["n"], "holds": r["holds"], "missed_fraction": r["span"]["missed_fraction"],
               "cpu_percent": r["cpu_percent"],
               "cpu_percent_per_source": round(r["cpu_percent"] / r["n"], 4), "peak_rss_mib": r["peak_rss_mib"]}
        if r["n"] > base["n"]:
            row["rss_per_extra_source_mib"] = round((r["peak_rss_mib"] - base["peak_rss_mib"]) / (r["n"] - base["n"]),
                                                    4)
            row["cpu_percent_per_extra_source"] = round((r["cpu_percent"] - base["cpu_percent"])
                                                        / (r["n"] - base["n"]), 4)
        rows.append(row)
    return rows


def window_cost_ms(run: dict, invoke_ms: float) -> dict:
    """The daemon's CPU per classified window (grid and onset windows, the whole process: capture, loop, MQTT)
    from one run, and that less the bare invoke measured here: what a board's CPU still does with an Edge TPU."""
    windows = run["span"]["windows"] + run["span"]["onset_windows"]
    per = 1e3 * run["cpu_s"] / windows if windows else math.inf
    return {"cpu_ms_per_window": round(per, 4), "invoke_ms": round(invoke_ms, 4),
            "rest_ms_per_window": round(max(0.0, per - invoke_ms), 4),
            "windows_per_source_s": round(windows / (run["n"] * run["span"]["seconds"]), 4)}


def estimate(rest_ms: float, windows_per_source_s: float, load: float = 1.0, boards: dict = BOARDS) -> dict:
    """Sources at real time per board: one classifying thread does a window's CPU part (rest_ms x the board's
    factor) and then waits out its Edge TPU invoke, one window after another; a source needs
    windows_per_source_s of them a second. `sources` fills the whole second; `at_load` only the share of it
    (`load`, 0-1) the daemon used here at the most sources that held. ESTIMATE: nothing here ran on a board."""
    out = {}
    for name, b in boards.items():
        per_ms = rest_ms * b["cpu_factor"] + b["invoke_ms"]
        most = 1e3 / (per_ms * windows_per_source_s) if per_ms > 0 else 0.0
        out[name] = {"cpu_factor": round(b["cpu_factor"], 3), "invoke_ms": b["invoke_ms"],
                     "ms_per_window": round(per_ms, 3), "from": b["from"], "sources": int(most),
                     "at_load": int(most * load), "load": round(load, 3)}
    return out


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def lines(result: dict) -> list[str]:
    """What the bench prints, from its result (out/bench/streams.json)."""
    out = []
    best, cpu = result["max_sources"], result["cpu"]
    holds = [r for r in result["runs"] if r["holds"]]
    tried = ", ".join(f"{r['n']}{'' if r['holds'] else ' x'}" for r in result["runs"])
    most = " (the most tried: --limit)" if best and best == result.get("limit") else ""
    out.append(f"sources at real time on one core (taskset -c {cpu}), <= {MISSED_MAX:.0%} of windows missed: "
               f"{best}{most} (tried {tried}; x = did not hold) (target >= {TARGETS['sources']}): "
               + verdict(best >= TARGETS["sources"]))
    for row in result["per_source"]:
        extra = (f", RSS per extra source {row['rss_per_extra_source_mib'] * 1024:.0f} KiB, CPU per extra source "
                 f"{row['cpu_percent_per_extra_source']:.3f} %") if "rss_per_extra_source_mib" in row else ""
        out.append(f"  N = {row['n']:3d}: missed {100 * row['missed_fraction']:.2f} %, CPU {row['cpu_percent']:.1f} % "
                   f"of a core ({row['cpu_percent_per_source']:.3f} % per source), peak RSS "
                   f"{row['peak_rss_mib']:.1f} MiB{extra}")
    worst = max((r for r in result["per_source"] if "rss_per_extra_source_mib" in r),
                key=lambda r: r["rss_per_extra_source_mib"], default=None)
    if worst is not None:
        rss = worst["rss_per_extra_source_mib"]
        out.append(f"RSS per extra source: at most {rss * 1024:.0f} KiB (N = {worst['n']}) (target <= "
                   f"{TARGETS['rss_per_source_mib']:g} MiB): " + verdict(rss <= TARGETS["rss_per_source_mib"]))
    if holds:
        top = max(holds, key=lambda r: r["n"])
        f = top["fairness"]
        ratio = f"{f['ratio']:.2f}x" if f["ratio"] is not None else "unbounded (the fastest waited 0 ms)"
        ok = f["ratio"] is not None and f["ratio"] <= TARGETS["fairness"]
        out.append(f"fairness at N = {top['n']}: slowest source's p50 latency {f['slowest_p50_ms']:.1f} ms vs the "
                   f"fastest's {f['fastest_p50_ms']:.1f} ms: {ratio} (median source {f['median_p50_ms']:.1f} ms, "
                   f"worst p99 {f['worst_p99_ms']:.1f} ms) (target <= {TARGETS['fairness']:g}x): " + verdict(ok))
        t = top["threads_percent"]
        out.append(f"where the CPU goes at N = {top['n']} ({t['all']:.1f} % of a core): loop thread {t['loop']:.1f} %, "
                   f"{top['n']} capture threads {t['capture']:.1f} %, others (MQTT, spool) {t['other']:.1f} %")
    out.extend(_separate_lines(result.get("separate")))
    out.extend(_estimate_lines(result.get("cost"), result.get("estimate")))
    return out


def _separate_lines(sep: dict | None) -> list[str]:
    if not sep:
        return []
    n, cpu = sep["n"], sep["cpu_ratio"]
    return [f"{n} single-source daemons vs one daemon with {n} sources, same audio, {cpu['rounds']} paired rounds "
            f"of {sep['seconds']:g} s: CPU {sep['cpu_separate_percent']:.1f} % vs {sep['cpu_one_percent']:.1f} % of a"
            f" core, ratio median {cpu['median']:.2f}x (range {cpu['min']:.2f}-{cpu['max']:.2f}); peak RSS "
            f"{sep['rss_separate_mib']:.0f} MiB vs {sep['rss_one_mib']:.0f} MiB ({sep['rss_ratio']:.2f}x), PSS "
            f"{sep['pss_separate_mib']:.0f} MiB vs {sep['pss_one_mib']:.0f} MiB ({sep['pss_ratio']:.2f}x)"]


def _estimate_lines(cost: dict | None, est: dict | None) -> list[str]:
    if not cost or not est:
        return []
    out = [f"ESTIMATE — not measured on a board: per window here {cost['cpu_ms_per_window']:.3f} ms of daemon CPU "
           f"at N = {cost['n']} less the bare CPU invoke {cost['invoke_ms']:.3f} ms = {cost['rest_ms_per_window']:.3f}"
           f" ms (front end, ring, detector, capture, MQTT); {cost['windows_per_source_s']:.2f} windows per source "
           "a second (grid + onset)"]
    for name, e in est.items():
        out.append(f"  {name}: {cost['rest_ms_per_window']:.3f} ms x {e['cpu_factor']:.2f} + Edge TPU invoke "
                   f"{e['invoke_ms']:g} ms = {e['ms_per_window']:.2f} ms per window -> ~{e['sources']} sources at "
                   f"real time with the classifying thread always busy, ~{e['at_load']} at the {e['load']:.0%} "
                   f"load that held here (factors: {e['from']})")
    return out
