"""`python -m tools.peers`: the kit and its peers side by side, on the same audio and the same model file.

    kit, waveform model        edge-audio bench on the model file the peers get (YAMNet with metadata)
    kit, Coral int8 twin       edge-audio bench on the installed bundle (Coral's split YAMNet: kit front end
                               + int8 CPU twin; the Edge TPU row says why it is unavailable here)
    MediaPipe                  mediapipe's AudioClassifier, in out/peers/mediapipe/.venv
    Task Library               tflite-support's AudioClassifier, in out/peers/tflite-support/.venv

Each runs in its own process, so peak RSS is that process's. Ratios are against the kit on the same model file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
sys.path.insert(0, str(ROOT))

from edge.core.stream import HOP_RANGE_SECONDS, HOP_SECONDS  # noqa: E402
from tools.peers.peers import PEERS, PeerError, ensure_venv, run_peer, write_metadata_model  # noqa: E402

E2E_OVER_INVOKE_TARGET = 1.5
# NumPy's OpenBLAS with several threads spins after each small product and stalls when a core is busy: the kit
# runs its front end with one BLAS thread (measured: 30 ms instead of 0.3 ms per window on a loaded machine)
BLAS_LIMIT = "OPENBLAS_NUM_THREADS"


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def parse_args(argv):
    from edge.app.command import OneLineParser
    p = OneLineParser(prog="python -m tools.peers",
                      description="The kit and its peers (MediaPipe, the TFLite Task Library) side by side on the "
                                  "same audio and the same model file: windows/s, ms per window, CPU per audio "
                                  "second and peak RSS, with ratios against the kit. Peers are installed into their "
                                  "own virtual environments under --out on the first run.",
                      epilog="example: python -m tools.peers --audio out/audio/speech_whistling2.wav "
                             "--model out/models/yamnet_classification.tflite --seconds 5",
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="out/models/yamnet_classification.tflite",
                   help="the waveform YAMNet every runner gets (a copy with metadata is written under --out)")
    p.add_argument("--labels", default="out/models/yamnet_class_map.csv", help="its class map")
    p.add_argument("--bundle", help="the kit's model bundle (default: the installed one, see 'make model')")
    p.add_argument("--audio", default="out/audio/speech_whistling2.wav", help="16 kHz mono WAV, looped")
    p.add_argument("--seconds", type=float, default=5.0, help="timed loop per runner (default: 5)")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help=f"seconds between windows (default: {HOP_SECONDS})")
    p.add_argument("--peers", default="mediapipe,tasklib", help="mediapipe,tasklib or none")
    p.add_argument("--out", default="out/bench", help="where results and peer venvs go (default: out/bench)")
    return p.parse_args(argv)


def kit_run(model_args: list, labels: str, audio: str, seconds: float, hop: float, delegate: str,
            out: Path) -> dict:
    cmd = [sys.executable, "-m", "edge", "bench", *model_args, "--delegate", delegate, "--threads", "1",
           "--audio", audio, "--seconds", str(seconds), "--realtime-seconds", str(min(seconds, 3.0)),
           "--hop", str(hop), "--json", "--out", str(out)]
    if labels:
        cmd += ["--labels", labels]
    env = dict(os.environ)
    env.setdefault(BLAS_LIMIT, "1")  # the kit's deployment setting, see docs/benchmarks.md
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)  # progress: our stderr
    if res.returncode != 0:
        raise PeerError(f"edge-audio bench exited {res.returncode}")
    return json.loads(res.stdout)


def kit_row(result: dict, label: str) -> dict:
    run = next(r for r in result["runs"] if r["status"] == "ok")
    return {"name": label, "model": run["model"], "windows_per_s": run["windows_per_s"],
            "p50": run["e2e_ms"]["p50"], "p99": run["e2e_ms"]["p99"], "invoke_p50": run["invoke_ms"]["p50"],
            "cpu_ms_per_audio_s": run["cpu_ms_per_audio_s"], "peak_rss_mb": run["peak_rss_mb"],
            "cpu_percent_realtime": run["realtime"]["cpu_percent"], "threads": run["threads"]}


def peer_row(result: dict, label: str, model: Path) -> dict:
    return {"name": label, "model": model.name, "windows_per_s": result["windows_per_s"],
            "p50": result["ms_per_window"]["p50"], "p99": result["ms_per_window"]["p99"],
            "cpu_ms_per_audio_s": result["cpu_ms_per_audio_s"], "peak_rss_mb": result["peak_rss_mb"],
            "version": result["version"], "threads": result["threads"], "top_label": result["top_label"]}


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


def main(argv=None) -> int:
    args = parse_args(argv)
    from edge.model.bundle import default_bundle_path

    wanted = [] if args.peers.strip() == "none" else [s.strip() for s in args.peers.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in PEERS]
    if unknown:
        print(f"python -m tools.peers: error: unknown peer {unknown[0]!r}; choose from {', '.join(PEERS)} or none",
              file=sys.stderr)
        return 2
    lo, hi = HOP_RANGE_SECONDS
    if not 0 < args.seconds <= 3600 or not lo <= args.hop <= hi:
        print(f"python -m tools.peers: error: --seconds must be in (0, 3600] and --hop in [{lo}, {hi}]", file=sys.stderr)
        return 2
    for what, path in (("--model", args.model), ("--labels", args.labels), ("--audio", args.audio)):
        if not Path(path).is_file():
            print(f"python -m tools.peers: error: {what} {path}: not found (run 'make bench', which fetches them)",
                  file=sys.stderr)
            return 2
    bundle = Path(args.bundle) if args.bundle else default_bundle_path()
    if not bundle.is_dir():
        print(f"python -m tools.peers: error: no model bundle at {bundle} (run 'make model')", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    peer_root = out / "peers"
    model, labels, audio = Path(args.model).resolve(), Path(args.labels).resolve(), Path(args.audio).resolve()
    started = time.time()

    # 1. peers' environments, and the model with metadata (written by the Task Library's metadata writer)
    pythons: dict = {}
    failures: dict = {}
    for key in (["tasklib"] if wanted else []) + [w for w in wanted if w != "tasklib"]:
        peer = PEERS[key]
        try:
            pythons[key] = ensure_venv(peer, peer_root, say)
            say(f"{peer.name}: ready ({peer.requirement})")
        except (PeerError, OSError, subprocess.SubprocessError) as exc:
            failures[key] = str(exc)
            say(f"{peer.name}: unavailable: {exc}")
    shared_model = model
    if wanted:
        meta = peer_root / "model" / model.name
        if "tasklib" in pythons:
            try:
                shared_model = write_metadata_model(pythons["tasklib"], model, labels, meta)
                say(f"model with audio-classifier metadata: {shared_model}")
            except PeerError as exc:
                failures.setdefault("tasklib", str(exc))
                failures.setdefault("mediapipe", f"no model with metadata ({exc})")
        else:
            for key in wanted:
                failures.setdefault(key, f"no model with metadata: the Task Library's metadata writer is not "
                                         f"installed ({failures.get('tasklib', 'tasklib not selected')})")

    # 2. the kit: the same model file the peers get, then its Coral split bundle
    rows = []
    results: dict = {}
    try:
        say(f"kit: {shared_model.name} (same file as the peers)")
        results["kit_waveform"] = kit_run(["--model", str(shared_model)], str(labels), str(audio), args.seconds,
                                          args.hop, "cpu", out / "kit_waveform.json")
        rows.append(kit_row(results["kit_waveform"], "kit: waveform model (same file)"))
    except (PeerError, ValueError) as exc:
        rows.append({"name": "kit: waveform model (same file)", "error": str(exc)})
    try:
        say(f"kit: bundle {bundle} (Edge TPU if present, then its int8 CPU twin + kit front end)")
        results["kit_coral"] = kit_run(["--bundle", str(bundle)], "", str(audio), args.seconds, args.hop, "all",
                                       out / "kit_coral.json")
        rows.append(kit_row(results["kit_coral"], "kit: Coral int8 twin + kit front end"))
    except (PeerError, ValueError, StopIteration) as exc:
        rows.append({"name": "kit: Coral int8 twin + kit front end", "error": str(exc)})

    # 3. peers, one at a time, same audio, same model file
    for key in wanted:
        peer = PEERS[key]
        label = f"{peer.label} {peer.requirement.split('==')[1]}"
        if key in failures:
            rows.append({"name": label, "error": failures[key]})
            continue
        say(f"{peer.name}: measuring for {args.seconds:g} s")
        try:
            results[key] = run_peer(peer, pythons[key], shared_model, audio, args.seconds, args.hop)
            rows.append(peer_row(results[key], label, shared_model))
        except PeerError as exc:
            rows.append({"name": label, "error": str(exc)})

    ref = rows[0] if "error" not in rows[0] else None
    print(f"same audio ({audio.name}, looped, hop {args.hop} s) and model file ({shared_model.name}) for every "
          f"runner but the Coral row; one thread; {args.seconds:g} s timed loop each; ms per window = end to end "
          "(kit: source -> ring -> front end -> invoke -> scores; peers: their classify call on one window); "
          f"kit with {BLAS_LIMIT}={os.environ.get(BLAS_LIMIT, '1')}")
    for line in table(rows, ref):
        print(line)
    print()
    for line in verdicts(rows, results):
        print(line)
    for r in rows:
        if r.get("top_label"):
            print(f"note: {r['name']} heard '{r['top_label']}' in the first window (threads: {r['threads']})")
    for key, res in results.items():
        for run in res.get("runs", []):
            if run["status"] != "ok":
                print(f"note: kit {run['delegate']}: {run['status']}: {run['reason']}")
        for w in res.get("warnings", []) if key == "kit_coral" else []:
            print(f"note: {w}")
    summary = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": args.seconds,
               "audio": str(audio), "model": str(shared_model), "rows": rows, "results": results,
               "elapsed_s": time.time() - started}
    (out / "side_by_side.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"results in {out / 'side_by_side.json'} ({time.time() - started:.0f} s)")
    return 0 if "error" not in rows[0] else 1


def verdicts(rows: list[dict], results: dict) -> list[str]:
    out = []
    by = {r["name"]: r for r in rows if "error" not in r}
    coral = by.get("kit: Coral int8 twin + kit front end")
    kit_same = by.get("kit: waveform model (same file)")
    if coral:
        ratio = coral["p50"] / coral["invoke_p50"]
        out.append(f"kit, int8 patch model: end to end {coral['p50']:.3f} ms / bare invoke {coral['invoke_p50']:.3f} "
                   f"ms per window (p50) = {ratio:.2f}x (target <= {E2E_OVER_INVOKE_TARGET}x): "
                   + ("met" if ratio <= E2E_OVER_INVOKE_TARGET else "NOT met"))
    mp = next((r for n, r in by.items() if n.startswith("MediaPipe")), None)
    if mp and coral:
        out.append(f"windows/s on the same audio: kit (Coral int8 twin) {coral['windows_per_s']:.0f} vs MediaPipe "
                   f"{mp['windows_per_s']:.0f} = {coral['windows_per_s'] / mp['windows_per_s']:.2f}x "
                   + ("(kit ahead)" if coral["windows_per_s"] > mp["windows_per_s"] else "(kit NOT ahead)"))
    if mp and kit_same:
        out.append(f"windows/s on the same model file: kit {kit_same['windows_per_s']:.0f} vs MediaPipe "
                   f"{mp['windows_per_s']:.0f} = {kit_same['windows_per_s'] / mp['windows_per_s']:.2f}x "
                   "(both are dominated by the same TFLite invoke)")
    return out


if __name__ == "__main__":
    sys.exit(main())
