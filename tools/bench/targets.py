"""`python -m tools bench-targets`: the targets of `make bench` in one place, read from the results its parts
wrote (out/bench/*.json), each with the figure as measured, how, and met / NOT met. A part that did not run is
one line saying so."""

from __future__ import annotations

import json
from pathlib import Path

from edge.app.command import add_command

from .goals import TARGETS


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _e2e_line(result, what: str, target: float) -> str:
    if result is None:
        return f"end to end / bare invoke, {what}: not measured (bench-runtime did not write its result)"
    run = next((r for r in result["runs"] if r.get("status") == "ok" and r.get("input_kind") == "logmel_patch"), None)
    ratio = run and run.get("e2e_over_invoke")
    if not ratio:
        return f"end to end / bare invoke, {what}: no log-mel run in the result"
    return (f"end to end / bare invoke, {what}, {run['model']} on {run['delegate']}: median {ratio['median']:.3f}x "
            f"(range {ratio['min']:.3f}-{ratio['max']:.3f}, {ratio['rounds']} paired rounds; bare invoke p50 "
            f"{run['invoke_ms']['p50']:.3f} ms, end to end p50 {run['e2e_ms']['p50']:.3f} ms) (target <= {target}x): "
            + _verdict(ratio["median"] <= target))


def _streams_lines(streams) -> list[str]:
    """bench-streams' targets: sources on one core, memory per extra source, fairness under load."""
    if not streams:
        return ["many sources in one daemon: not measured (bench-streams did not run)"]
    t = streams["targets"]
    held = [r for r in streams["runs"] if r.get("holds")]
    out = [f"sources at real time on one core, <= 1 % of windows missed: {streams['max_sources']} (tried up to "
           f"{streams['limit']}) (target >= {t['sources']}): " + _verdict(streams["max_sources"] >= t["sources"])]
    rss = [p["rss_per_extra_source_mib"] for p in streams["per_source"] if p.get("rss_per_extra_source_mib")]
    if rss:
        out.append(f"resident memory per extra source: at most {max(rss) * 1024:.0f} KiB (target <= "
                   f"{t['rss_per_source_mib']:g} MiB): " + _verdict(max(rss) <= t["rss_per_source_mib"]))
    fair = held[-1].get("fairness") if held else None
    if fair:
        out.append(f"fairness at {held[-1]['n']} sources: the slowest source's p50 latency "
                   f"{fair['slowest_p50_ms']:.0f} ms vs the fastest's {fair['fastest_p50_ms']:.0f} ms, "
                   f"{fair['ratio']:.2f}x (target <= {t['fairness']:g}x): " + _verdict(fair["ratio"] <= t["fairness"]))
    return out


def lines(out: Path) -> list[str]:
    result = []
    result.append(_e2e_line(_load(out / "runtime-bundle.json"), "hop 0.48 s", TARGETS["e2e_default"]))
    result.append(_e2e_line(_load(out / "runtime-bundle-hop04875.json"), "hop 0.4875 s", TARGETS["e2e_off_grid"]))
    side = _load(out / "side_by_side.json")
    over = (side or {}).get("ratios", {}).get("kit_coral_over_mediapipe")
    if over:
        result.append(f"windows/s, kit default path / MediaPipe on the same audio: median {over['median']:.2f}x (range "
                      f"{over['min']:.2f}-{over['max']:.2f}, {over['rounds']} paired rounds) (target >= "
                      f"{TARGETS['over_mediapipe']:g}x): " + _verdict(over["median"] >= TARGETS["over_mediapipe"]))
    else:
        result.append("windows/s, kit / MediaPipe: not measured (bench-peers did not run MediaPipe)")
    daemon = _load(out / "daemon_bench.json")
    if daemon:
        over_mb = daemon["rss_overhead_mb"]
        result.append(f"daemon peak RSS {daemon['daemon_peak_rss_mb']:.1f} MiB vs a bare LiteRT process with the same "
                      f"model {daemon['bare_litert_peak_rss_mb']:.1f} MiB: +{over_mb:.1f} MiB (target <= "
                      f"+{TARGETS['rss_margin_mb']:g} MiB): " + _verdict(over_mb <= TARGETS["rss_margin_mb"]))
        cpu = daemon.get("cpu_ratio")
        if cpu is not None:
            result.append(f"daemon CPU at real time / bench pipeline's, same audio: median {cpu['median']:.2f}x (range "
                          f"{cpu['min']:.2f}-{cpu['max']:.2f}, {cpu['rounds']} paired rounds of {daemon['seconds']:g} "
                          f"s) (target <= {TARGETS['cpu_ratio']}x): " + _verdict(cpu["median"] <= TARGETS["cpu_ratio"]))
    else:
        result.append("daemon RSS and CPU: not measured (bench-daemon did not run)")
    result += _streams_lines(_load(out / "streams.json"))
    onset = _load(out / "onset.json")
    if onset and onset.get("live"):
        from .onset import report
        recordings = sum(1 for c in onset["live_clips"] if "@" in c)
        result += [l for l in report(onset, recordings, onset.get("per_class", 1))
                   if l.startswith(("onset ->", "false starts"))]
    else:
        result.append("onset latency and false starts: not measured (bench-onset did not run or had no live part)")
    return result


def add_parser(sub) -> None:
    p = add_command(sub, "bench-targets", "the targets of make bench, from the results its parts wrote",
                    "Read out/bench/*.json (written by make bench's parts) and print each target with its figure "
                    "and whether it is met.", ["python -m tools bench-targets out/bench"])
    p.add_argument("folder", nargs="?", default="out/bench", help="where make bench wrote its results")
    p.set_defaults(func=cmd)


def cmd(args) -> int:
    from edge.core.errors import InputError
    folder = Path(args.folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (run make bench first)")
    print("== targets")
    for line in lines(folder):
        print(line)
    return 0
