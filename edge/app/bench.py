"""`edge-audio bench`: on-device latency, CPU and memory per delegate x thread count, through the real pipeline.

Measuring lives in edge/bench/measure.py, the machine description in env.py, the result schema, comparisons and
reference profiles (package data in edge/bench/profiles/) in report.py. This module is the command line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..bench.hook import detector_hook, load_audio
from ..bench.measure import ROUNDS
from ..core.errors import DelegateError, InputError, ModelError
from .command import add_command, sayer

EXIT_REGRESSION = 1
DELEGATES = ("all", "cpu", "edgetpu", "auto")
MAX_SECONDS = 3600.0

EXAMPLES = [
    "edge-audio bench                                    installed bundle, Edge TPU (if any) and CPU, 1 thread",
    "edge-audio bench --bundle out/bundle --threads 1,2,4 --seconds 10",
    "edge-audio bench --model yamnet_classification.tflite --delegate cpu --json > pi4.json",
    "edge-audio bench --compare pi4.json                 exit 1 if slower than the saved result",
    "edge-audio bench --check                            against this board's profile in edge/bench/profiles/",
    "edge-audio bench --check --profile pi4-usb-coral --tolerance 0.25",
    "edge-audio bench --result pi4.json --check          check a saved result without measuring again",
    "edge-audio bench --plot latency.png                 latency histogram (needs matplotlib)",
]
EXIT_STATUS = "exit status: 0 ok, 1 a regression (--compare/--check), 2 bad input or nothing could be measured"

_say = sayer("edge-audio bench")


def add_parser(sub) -> None:
    from .args import MODEL, add_hop_arg

    p = add_command(sub, "bench", "latency, CPU and memory per delegate and thread count; regression checks",
                    "Run audio through the real pipeline (source -> ring -> front end -> invoke -> scores) for each "
                    "delegate and thread count and report init time, first invoke, invoke latency distribution, "
                    "front-end and end-to-end time per window, CPU share at real time, peak RSS and allocation per "
                    "window, with the board, governor, temperature, runtime and Edge TPU it ran on. See "
                    "docs/benchmarks.md.", EXAMPLES, EXIT_STATUS)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="PATH", help="a .tflite model (its _edgetpu twin is found beside it)")
    src.add_argument("--bundle", metavar="DIR", help="a model bundle folder (default: the installed bundle)")
    p.add_argument("--labels", metavar="CSV", help="class map (default: the bundle's, or one beside the model)")
    p.add_argument("--delegate", default="all", metavar="WHICH",
                   help="all | cpu | edgetpu[:usb[:N]|:pci[:N]] | auto (default: all = Edge TPU, then CPU)")
    p.add_argument("--threads", default=str(MODEL.threads), metavar="LIST",
                   help=f"CPU thread counts, e.g. 1,2,4 (default: {MODEL.threads})")
    p.add_argument("--backend", metavar="LIST", help="interpreter preference, comma separated")
    p.add_argument("--audio", metavar="WAV", help="audio to loop (default: generated noise; the figures do not "
                                                  "depend on content)")
    add_hop_arg(p)
    p.add_argument("--seconds", type=float, default=5.0, metavar="S",
                   help="wall time of each timed loop: bare invoke, pipeline (default: 5)")
    p.add_argument("--rounds", type=int, default=ROUNDS, metavar="N",
                   help=f"bare invoke and pipeline alternate N times within --seconds each, so the overhead ratios "
                        f"are paired (default: {ROUNDS})")
    p.add_argument("--realtime-seconds", type=float, metavar="S",
                   help="wall time of the run paced at real time, for CPU %% (default: --seconds)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object (schema: --schema)")
    p.add_argument("--out", metavar="FILE", help="also save the JSON result to FILE")
    p.add_argument("--compare", metavar="FILE", help="compare with a saved result; exit 1 on a regression")
    p.add_argument("--check", action="store_true",
                   help="compare with the board's reference figures (edge/bench/profiles/); exit 1 on a regression")
    p.add_argument("--profile", metavar="NAME|FILE",
                   help="reference profile for --check (default: detected from /proc/device-tree/model)")
    p.add_argument("--tolerance", type=float, metavar="FRAC",
                   help="allowed slow-down before it counts as a regression (default: the profile's, else 0.15)")
    p.add_argument("--result", metavar="FILE", help="use a saved result instead of measuring (with --compare/--check)")
    p.add_argument("--write-profile", metavar="FILE", help="save this run's figures as a reference profile")
    p.add_argument("--plot", metavar="PNG", help="latency distribution plot (needs matplotlib)")
    p.add_argument("--schema", action="store_true", help="print the JSON schema of the result and exit")
    p.add_argument("--no-detector", action="store_true",
                   help="leave the detector out of the end-to-end loop (default: it runs after every window, "
                        "with the daemon's default settings, as on the device)")
    p.set_defaults(func=cmd_bench)


def parse_threads(spec: str) -> list[int]:
    try:
        values = [int(s) for s in str(spec).split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--threads {spec!r}: give thread counts such as 1 or 1,2,4") from None
    if not values or any(not 1 <= v <= 64 for v in values):
        raise InputError(f"--threads {spec!r}: each count must be between 1 and 64")
    return list(dict.fromkeys(values))


def parse_delegates(spec: str) -> list[str]:
    from ..model.delegate import DelegatePolicy
    spec = (spec or "all").strip()
    if spec == "all":
        return ["edgetpu", "cpu"]
    DelegatePolicy.parse(spec)  # one-line error for a bad one
    return [spec]


def _check_args(args) -> None:
    for name in ("seconds", "realtime_seconds"):
        value = getattr(args, name)
        if value is not None and not 0 < value <= MAX_SECONDS:
            raise InputError(f"--{name.replace('_', '-')} {value:g}: give a duration between 0 and {MAX_SECONDS:g} s")
    if not 1 <= args.rounds <= 100:
        raise InputError(f"--rounds {args.rounds}: give 1 to 100 rounds")
    if args.tolerance is not None and not 0 < args.tolerance < 10:
        raise InputError(f"--tolerance {args.tolerance:g}: give a fraction such as 0.15 (15 %)")
    if args.result and not (args.compare or args.check):
        raise InputError("--result only makes sense with --compare or --check")
    if args.profile and not args.check:
        raise InputError("--profile only makes sense with --check")


def run_bench(model, labels, delegates: list[str], threads: list[int], backend_spec, audio, hop_seconds: float,
              seconds: float, realtime_seconds: float, on_window=None, progress=None,
              detector: bool = True, rounds: int = ROUNDS) -> tuple[dict, dict]:
    """Measure every delegate x thread configuration. Returns (result, latency samples for the plot).
    A delegate that cannot be used on this machine is a run with status 'unavailable' and its reason."""
    from ..bench import env as bench_env
    from ..bench.measure import measure
    from ..bench.report import KIND, SCHEMA_VERSION
    from ..core.stream import hop_samples_for
    from ..model.bundle import resolve_model
    from ..model.classifier import Classifier
    from ..model.labels import load_labels
    from ..model.runtime import load_backend

    hop_samples = hop_samples_for(hop_seconds)
    backend = load_backend(backend_spec)
    source = resolve_model(model, labels)  # bad model / labels: exit 2 before anything is measured
    label_list = load_labels(source.labels) if detector and on_window is None else None
    say = progress or (lambda m: None)
    configs = [(d, t) for d in delegates for t in (threads[:1] if d.startswith("edgetpu") else threads)]
    runs, samples = [], {}
    for i, (delegate, n_threads) in enumerate(configs, 1):
        tag = f"[{i}/{len(configs)}] {source.name} {delegate} x{n_threads}"
        say(f"{tag}: loading")

        def open_it(delegate=delegate, n_threads=n_threads):
            return Classifier.open(model, labels, delegate, n_threads, backend)
        hook, lead = (on_window, 0) if on_window or not label_list else \
            detector_hook(label_list, source.frontend)  # fresh per run
        try:
            run = measure(open_it, audio, hop_samples, seconds, realtime_seconds, hook,
                          lambda m, tag=tag: say(f"{tag}: {m}"), rounds=rounds, onset_lead_samples=lead)
        except (DelegateError, ModelError) as exc:
            if isinstance(exc, ModelError) and delegate == "cpu":
                raise
            say(f"{tag}: unavailable: {exc}")
            runs.append({"status": "unavailable", "delegate": delegate.split(":")[0], "threads": n_threads,
                         "reason": str(exc)})
            continue
        run_samples = run.pop("_samples")
        for name, values in run_samples.items():
            samples[f"{run['model']} {run['delegate']} x{n_threads} {name}"] = values
        say(f"{tag}: {run['windows_per_s']:.0f} windows/s, end to end p50 {run['e2e_ms']['p50']:.3f} ms")
        runs.append(run)
    env = bench_env.environment(backend)
    result = {
        "kind": KIND, "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": env,
        "settings": {"model": source.name, "audio": audio.name, "hop_seconds": hop_seconds, "seconds": seconds,
                     "realtime_seconds": realtime_seconds, "rounds": rounds, "delegates": delegates,
                     "threads": threads,
                     "detector": on_window is not None or label_list is not None},
        "warnings": bench_env.warnings(env),
        "runs": runs,
    }
    return result, samples


def _write(path: str, text: str, what: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the {what} ({exc.strerror})") from None


def _compare(result: dict, lines: list, key: str, references: list, tolerance, default_tolerance: float,
             header: dict, what: str, nothing_matched: str) -> int:
    """Compare the runs with reference runs; record it under result["comparison"][key]; EXIT_REGRESSION or 0."""
    from ..bench import report
    figures = report.CHECKED if key == "check" else report.COMPARED
    comp = report.compare_runs(result["runs"], references, tolerance if tolerance is not None else default_tolerance,
                               figures)
    result.setdefault("comparison", {})[key] = {**header, **comp}
    lines += report.comparison_lines(comp, what)
    if not comp["rows"]:
        expected = ", ".join(comp["not_measured"]) or "no successful run"
        hint = "; pass --profile or --write-profile" if key == "check" else ""
        raise InputError(f"{nothing_matched} ({expected}){hint}")
    return EXIT_REGRESSION if comp["regressions"] else 0


def cmd_bench(args) -> int:
    from ..bench import report

    if args.schema:
        print(json.dumps(report.SCHEMA, indent=2))
        return 0
    _check_args(args)
    delegates = parse_delegates(args.delegate)
    threads = parse_threads(args.threads)
    baseline = report.load_result(args.compare) if args.compare else None  # bad files fail before measuring
    profile = None
    if args.check:
        from ..bench.env import board_model
        profile = report.find_profile(args.profile, board_model())
    result, samples = _measured(args, delegates, threads)
    lines: list[str] = []
    status = _compared(args, result, baseline, profile, lines)
    _write_outputs(args, result, samples)
    if args.json:
        print(json.dumps(result))
        for line in lines:
            print(line, file=sys.stderr)
    else:
        for line in report.text_report(result) + lines:
            print(line)
    if status == EXIT_REGRESSION:
        _say("regression: slower than the reference beyond the tolerance (exit 1)")
    return status


def _measured(args, delegates: list[str], threads: list[int]) -> tuple[dict, dict]:
    """(result, latency samples): a saved result (--result, no samples), or every configuration measured now;
    InputError when not one of them could be."""
    from ..bench import report

    if args.result:
        return report.load_result(args.result), {}
    audio = load_audio(args.audio)
    seconds = args.seconds
    realtime = args.realtime_seconds if args.realtime_seconds is not None else seconds
    result, samples = run_bench(args.model or args.bundle, args.labels, delegates, threads, args.backend,
                                audio, args.hop, seconds, realtime, progress=_say,
                                detector=not args.no_detector, rounds=args.rounds)
    if not any(r["status"] == "ok" for r in result["runs"]):
        reasons = "; ".join(f"{r['delegate']}: {r['reason']}" for r in result["runs"])
        raise InputError(f"nothing could be measured ({reasons})")
    return result, samples


def _compared(args, result: dict, baseline: dict | None, profile: dict | None, lines: list) -> int:
    """--compare against a saved result and --check against a board profile: EXIT_REGRESSION if either finds
    one, else 0 (their lines added to `lines`)."""
    from ..bench import report

    status = 0
    if baseline is not None:
        status |= _compare(result, lines, "compare", baseline["runs"], args.tolerance, report.DEFAULT_TOLERANCE,
                           {"against": args.compare}, f"{args.compare} ({baseline['created']})",
                           f"--compare: {args.compare} has no run with the same model, delegate and threads")
    if profile is not None:
        what = f"profile {profile['name']} ({profile['path']})"
        if not profile.get("measured"):
            what += " [provisional figures, not measured on this board: record yours with --write-profile]"
        status |= _compare(result, lines, "check", report.profile_references(profile), args.tolerance,
                           profile.get("tolerance", report.DEFAULT_TOLERANCE),
                           {"profile": profile["name"], "path": profile["path"],
                            "measured_reference": bool(profile.get("measured"))}, what,
                           f"--check: profile {profile['name']} has no figures for what was measured")
    return status


def _write_outputs(args, result: dict, samples: dict) -> None:
    """--write-profile, --out and --plot."""
    from ..bench import report

    if args.write_profile:
        name = Path(args.write_profile).stem
        prof = report.profile_from_result(result, name, args.tolerance or report.DEFAULT_TOLERANCE)
        _write(args.write_profile, json.dumps(prof, indent=2) + "\n", "reference profile")
        _say(f"reference profile written to {args.write_profile}")
    if args.out:
        _write(args.out, json.dumps(result, indent=2) + "\n", "result")
    if args.plot:
        note = report.plot_latency(result, samples, Path(args.plot)) if samples else \
            "no plot: a saved result (--result) has no per-window samples"
        _say(note)
