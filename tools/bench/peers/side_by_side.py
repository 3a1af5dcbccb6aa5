"""`python -m tools peers` (also `python -m tools.bench.peers`): the kit and its peers side by side, on the same
audio and the same model file.

    kit, waveform model        the kit's pipeline on the model file the peers get (YAMNet with metadata)
    kit, default path          the kit's pipeline on the installed bundle with the default delegate policy: the
                               Edge TPU when there is one, else Coral's int8 CPU twin, behind the kit's front end,
                               with the detector at its default settings
    MediaPipe                  mediapipe's AudioClassifier, in out/peers/mediapipe/.venv
    Task Library               tflite-support's AudioClassifier, in out/peers/tflite-support/.venv

Each runs in its own process (so peak RSS is that process's), started once; then every runner measures one
round of --seconds in turn, --rounds times, the order reversed every other round, so a machine that gets busier
or quieter slows them alike. Figures are medians over the rounds; kit / peer ratios are taken round by round
(paired) and given as their median and range.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edge.app.command import OneLineParser, add_command, run, sayer
from edge.bench.measure import ratio_stats
from edge.core.errors import InputError
from edge.core.stream import HOP_RANGE_SECONDS, HOP_SECONDS
from tools import REPO

from ..goals import TARGETS
from .peers import PEERS, PeerError, Runner, ensure_venv, peer_command, peer_env, write_metadata_model

E2E_OVER_INVOKE_TARGET = TARGETS["e2e_default"]
OVER_MEDIAPIPE_TARGET = TARGETS["over_mediapipe"]
ROUNDS = 7
# NumPy's OpenBLAS with several threads spins after each small product and stalls when a core is busy: the kit
# runs its front end with one BLAS thread (measured: 30 ms instead of 0.3 ms per window on a loaded machine)
BLAS_LIMIT = "OPENBLAS_NUM_THREADS"
STANDALONE = "python -m tools.bench.peers"
HELP = "the kit beside MediaPipe and the TFLite Task Library on the same audio and model file"
DESCRIPTION = ("The kit and its peers (MediaPipe, the TFLite Task Library) side by side on the same audio and the "
               "same model file: windows/s, ms per window, CPU per audio second and peak RSS, with ratios against "
               "the kit. Peers are installed into their own virtual environments under --out on the first run.")
EXAMPLE = ("--audio out/audio/speech_whistling2.wav --model out/models/yamnet_classification.tflite --rounds 7 "
           "--seconds 2")

say = sayer("bench")


def add_parser(sub) -> None:
    add_arguments(add_command(sub, "peers", HELP, DESCRIPTION, [f"%(prog)s {EXAMPLE}"]))


def main(argv=None) -> int:
    """`python -m tools.bench.peers ...`: the same command on its own."""
    parser = OneLineParser(prog=STANDALONE, description=DESCRIPTION, epilog=f"example: {STANDALONE} {EXAMPLE}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser, argv, STANDALONE)


def add_arguments(p) -> None:
    p.add_argument("--model", default="out/models/yamnet_classification.tflite",
                   help="the waveform YAMNet every runner gets (a copy with metadata is written under --out)")
    p.add_argument("--labels", default="out/models/yamnet_class_map.csv", help="its class map")
    p.add_argument("--bundle", help="the kit's model bundle (default: the installed one, see 'make model')")
    p.add_argument("--audio", default="out/audio/speech_whistling2.wav", help="16 kHz mono WAV, looped")
    p.add_argument("--seconds", type=float, default=2.0, help="timed loop per runner and round (default: 2)")
    p.add_argument("--rounds", type=int, default=ROUNDS, help=f"alternating rounds (default: {ROUNDS})")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help=f"seconds between windows (default: {HOP_SECONDS})")
    p.add_argument("--peers", default="mediapipe,tasklib", help="mediapipe,tasklib or none")
    p.add_argument("--out", default="out/bench", help="where results and peer venvs go (default: out/bench)")
    p.set_defaults(func=cmd_peers)


KIT_SAME, KIT_DEFAULT = "kit: waveform model (same file)", "kit: default path (Coral bundle, auto)"


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def row_of(label: str, runner: Runner, model_name: str) -> dict:
    r = runner.rounds
    return {"name": label, "model": runner.info.get("model", model_name), "rounds": len(r),
            "windows_per_s": _median(x["windows_per_s"] for x in r),
            "p50": _median(x["ms_per_window"]["p50"] for x in r), "p99": _median(x["ms_per_window"]["p99"] for x in r),
            "invoke_p50": _median(x.get("invoke_p50_ms") for x in r),
            "cpu_ms_per_audio_s": _median(x["cpu_ms_per_audio_s"] for x in r),
            "peak_rss_mb": max(x["peak_rss_mb"] for x in r), "version": runner.info.get("version"),
            "threads": runner.info.get("threads"), "top_label": runner.info.get("top_label")}


def paired(a: Runner, b: Runner, key: str = "windows_per_s") -> dict | None:
    """a / b round by round: median, range, rounds."""
    return ratio_stats([(x[key], y[key]) for x, y in zip(a.rounds, b.rounds)])


def table(rows: list[dict], ref: dict | None) -> list[str]:
    head = (f"{'runner':44s} {'windows/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s} {'CPU ms/audio s':>14s} "
            f"{'peak RSS MB':>11s}   {'vs kit: windows/s':>17s} {'CPU':>6s} {'RSS':>6s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['name']:44s} failed: {r['error']}")
            continue
        ratio = ""
        if ref is not None:
            ratio = (f"   {r['windows_per_s'] / ref['windows_per_s']:16.2f}x {r['cpu_ms_per_audio_s'] / ref['cpu_ms_per_audio_s']:5.2f}x"
                     f" {r['peak_rss_mb'] / ref['peak_rss_mb']:5.2f}x")
        lines.append(f"{r['name']:44s} {r['windows_per_s']:9.0f} {r['p50']:7.3f} {r['p99']:7.3f} "
                     f"{r['cpu_ms_per_audio_s']:14.2f} {r['peak_rss_mb']:11.1f}{ratio}")
    return lines


def _kit_cmd(model_args: list, audio: Path, hop: float) -> list:
    return [sys.executable, "-m", "tools.bench.peers.kit_runner", *model_args, "--audio", str(audio), "--hop", str(hop)]


def cmd_peers(args) -> int:
    wanted, bundle = _checked(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    peer_root = out / "peers"
    model, labels, audio = Path(args.model).resolve(), Path(args.labels).resolve(), Path(args.audio).resolve()
    started = time.time()
    failures: dict = {}  # runner key -> why it has no figures
    pythons = _peer_environments(wanted, peer_root, failures)
    shared_model = _model_with_metadata(wanted, pythons, model, labels, peer_root, failures)
    kit_env = dict(os.environ, PYTHONPATH=str(REPO))
    kit_env.setdefault(BLAS_LIMIT, "1")  # the kit's deployment setting, see docs/benchmarks.md
    labels_of = {"kit_waveform": KIT_SAME, "kit_coral": KIT_DEFAULT, **{k: _peer_label(k) for k in wanted}}
    specs = [("kit_waveform", _kit_cmd(["--model", str(shared_model), "--labels", str(labels), "--delegate", "cpu"],
                                       audio, args.hop), kit_env, REPO),
             ("kit_coral", _kit_cmd(["--model", str(bundle)], audio, args.hop), kit_env, REPO)]
    specs += [(key, peer_command(PEERS[key], pythons[key], shared_model, audio, args.hop), peer_env(), None)
              for key in wanted if key not in failures]
    runners = _start_runners(specs, labels_of, failures)
    _alternate(runners, [k for k in labels_of if k in runners], labels_of, args.rounds, args.seconds, failures)
    rows, ratios = _results(runners, labels_of, failures, wanted, shared_model.name)
    _print_report(rows, ratios, runners, args, audio.name, shared_model.name, kit_env[BLAS_LIMIT])
    summary = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": args.seconds,
               "rounds": args.rounds, "audio": str(audio), "model": str(shared_model), "rows": rows,
               "ratios": ratios, "runners": {k: {"info": r.info, "rounds": r.rounds} for k, r in runners.items()},
               "elapsed_s": time.time() - started}
    (out / "side_by_side.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"results in {out / 'side_by_side.json'} ({time.time() - started:.0f} s)")
    return 0 if "error" not in rows[0] else 1


def _checked(args) -> tuple[list[str], Path]:
    """The peers asked for and the kit's bundle, every argument checked before anything is installed."""
    from edge.model.bundle import default_bundle_path
    wanted = [] if args.peers.strip() == "none" else [s.strip() for s in args.peers.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in PEERS]
    if unknown:
        raise InputError(f"unknown peer {unknown[0]!r}; choose from {', '.join(PEERS)} or none")
    lo, hi = HOP_RANGE_SECONDS
    if not 0 < args.seconds <= 3600 or not lo <= args.hop <= hi or not 1 <= args.rounds <= 100:
        raise InputError(f"--seconds must be in (0, 3600], --hop in [{lo}, {hi}] and --rounds in [1, 100]")
    for what, path in (("--model", args.model), ("--labels", args.labels), ("--audio", args.audio)):
        if not Path(path).is_file():
            raise InputError(f"{what} {path}: not found (run 'make bench', which fetches them)")
    bundle = Path(args.bundle) if args.bundle else default_bundle_path()
    if not bundle.is_dir():
        raise InputError(f"no model bundle at {bundle} (run 'make model')")
    return wanted, bundle


def _peer_label(key: str) -> str:
    return f"{PEERS[key].label} {PEERS[key].requirement.split('==')[1]}"


def _peer_environments(wanted: list[str], peer_root: Path, failures: dict) -> dict:
    """Each peer's virtual environment (made on the first run): key -> its Python. The Task Library's comes
    first whenever a peer is wanted: its metadata writer makes the model file every peer reads."""
    pythons: dict = {}
    for key in (["tasklib"] if wanted else []) + [w for w in wanted if w != "tasklib"]:
        peer = PEERS[key]
        try:
            pythons[key] = ensure_venv(peer, peer_root, say)
            say(f"{peer.name}: ready ({peer.requirement})")
        except (PeerError, OSError, subprocess.SubprocessError) as exc:
            failures[key] = str(exc)
            say(f"{peer.name}: unavailable: {exc}")
    return pythons


def _model_with_metadata(wanted: list[str], pythons: dict, model: Path, labels: Path, peer_root: Path,
                         failures: dict) -> Path:
    """The model file every runner gets: the waveform model with audio-classifier metadata when peers run."""
    if not wanted:
        return model
    if "tasklib" not in pythons:
        for key in wanted:
            failures.setdefault(key, f"no model with metadata: the Task Library's metadata writer is not "
                                     f"installed ({failures.get('tasklib', 'tasklib not selected')})")
        return model
    try:
        shared_model = write_metadata_model(pythons["tasklib"], model, labels, peer_root / "model" / model.name)
    except PeerError as exc:
        failures.setdefault("tasklib", str(exc))
        failures.setdefault("mediapipe", f"no model with metadata ({exc})")
        return model
    say(f"model with audio-classifier metadata: {shared_model}")
    return shared_model


def _start_runners(specs: list, labels_of: dict, failures: dict) -> dict:
    """Every runner started once (each loads its model and warms up): key -> Runner."""
    runners: dict = {}
    for key, cmd, env, cwd in specs:
        label = labels_of[key]
        say(f"starting {label}")
        try:
            runners[key] = Runner(label, cmd, env, cwd)
        except PeerError as exc:
            failures[key] = str(exc)
            say(f"{label}: failed: {exc}")
    return runners


def _alternate(runners: dict, order: list[str], labels_of: dict, rounds: int, seconds: float,
               failures: dict) -> None:
    """`rounds` rounds of `seconds` per runner, the order reversed every other round; a runner that fails is
    closed and left out of the rest. Every runner is closed at the end."""
    try:
        for r in range(rounds):
            say(f"round {r + 1}/{rounds}: {seconds:g} s each")
            for key in (order if r % 2 == 0 else order[::-1]):
                if key not in runners:
                    continue
                try:
                    runners[key].run(seconds)
                except PeerError as exc:
                    failures[key] = str(exc)
                    say(f"{labels_of[key]}: failed: {exc}")
                    runners.pop(key).close()
    finally:
        for runner in runners.values():
            runner.close()


def _results(runners: dict, labels_of: dict, failures: dict, wanted: list[str],
             model_name: str) -> tuple[list[dict], dict]:
    """One row per runner (its figures, or why it has none) and the paired kit / peer ratios."""
    rows = []
    for key, label in labels_of.items():
        if key in runners and runners[key].rounds:
            rows.append(row_of(label, runners[key], model_name))
        else:
            rows.append({"name": label, "error": failures.get(key, "no round measured")})
    ratios = {}
    if "kit_coral" in runners and runners["kit_coral"].rounds:
        ratios["kit_default_e2e_over_invoke"] = _ratio_of(runners["kit_coral"], "invoke_p50_ms")
    for key in wanted:
        for kit in ("kit_coral", "kit_waveform"):
            if key in runners and kit in runners:
                ratios[f"{kit}_over_{key}"] = paired(runners[kit], runners[key])
    return rows, ratios


def _print_report(rows: list[dict], ratios: dict, runners: dict, args, audio_name: str, model_name: str,
                  blas_threads: str) -> None:
    ref = rows[0] if "error" not in rows[0] else None
    print(f"same audio ({audio_name}, looped, hop {args.hop} s) for every runner and the same model file "
          f"({model_name}) for all but the kit's default path; one thread; {args.rounds} alternating rounds "
          f"of {args.seconds:g} s per runner (order reversed every other round), medians over the rounds; ms per "
          "window = end to end (kit: source -> ring -> front end -> invoke -> scores -> detector; peers: their "
          f"classify call on one window); kit with {BLAS_LIMIT}={blas_threads}")
    for line in table(rows, ref):
        print(line)
    print()
    for line in verdicts(rows, ratios):
        print(line)
    for r in rows:
        if r.get("top_label"):
            print(f"note: {r['name']} heard '{r['top_label']}' in its first window (threads: {r['threads']})")
    if "kit_coral" in runners:
        print(f"note: kit default path: {runners['kit_coral'].info.get('decision')}")


def _ratio_of(kit: Runner, invoke_key: str) -> dict | None:
    """End to end p50 / bare invoke p50 of each round of the kit runner."""
    return ratio_stats([(x["ms_per_window"]["p50"], x.get(invoke_key)) for x in kit.rounds])


def _span(r: dict) -> str:
    return f"median {r['median']:.2f}x (range {r['min']:.2f}-{r['max']:.2f}, {r['rounds']} paired rounds)"


def verdicts(rows: list[dict], ratios: dict) -> list[str]:
    out = []
    by = {r["name"]: r for r in rows if "error" not in r}
    e2e = ratios.get("kit_default_e2e_over_invoke")
    if e2e:
        out.append(f"kit, default path: end to end / bare invoke (p50s) {_span(e2e)} (target <= "
                   f"{E2E_OVER_INVOKE_TARGET}x): " + ("met" if e2e["median"] <= E2E_OVER_INVOKE_TARGET else "NOT met"))
    mp = next((n for n in by if n.startswith("MediaPipe")), None)
    over = ratios.get("kit_coral_over_mediapipe")
    if mp and over:
        out.append(f"windows/s on the same audio, kit default path / {mp}: {_span(over)} (target >= "
                   f"{OVER_MEDIAPIPE_TARGET:g}x): " + ("met" if over["median"] >= OVER_MEDIAPIPE_TARGET else "NOT met"))
    same = ratios.get("kit_waveform_over_mediapipe")
    if mp and same:
        out.append(f"windows/s on the same model file, kit / {mp}: {_span(same)} (both are dominated by the same "
                   "TFLite invoke)")
    tl = ratios.get("kit_coral_over_tasklib")
    if tl:
        out.append(f"windows/s on the same audio, kit default path / Task Library: {_span(tl)}")
    return out
