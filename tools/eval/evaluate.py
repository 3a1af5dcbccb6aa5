"""`evaluate`: models side by side against a reference, over the same windows of a WAV folder.

Every model runs through the runtime's own path (Classifier + the classify pipeline), so a waveform model and
a patch model see identical windows, and the patch model gets the project's front end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.app.command import add_command, sayer
from edge.core.console import Progress
from edge.model.bundle import is_bundle, load_bundle
from edge.model.classifier import Classifier
from edge.core.errors import InputError
from edge.model.recordings import classify_file
from edge.core.clip import CLIP_POOLS, DEFAULT_POOL, pool_scores
from edge.core.stream import HOP_SECONDS, hop_samples_for

from .accuracy import hit_rates, read_labels_csv
from ..audio_windows import wav_files
from .compare import compare_scores

say = sayer("evaluate")


@dataclass
class ModelRun:
    name: str
    windows: np.ndarray  # [windows, classes]
    clips: np.ndarray  # [files, classes] pooled window scores (mean or max)


def run_model(model: str, files: list[Path], hop_seconds: float, delegate: str = "cpu", labels: str | None = None,
              progress: bool = True, pool: str = DEFAULT_POOL) -> ModelRun:
    classifier = Classifier.open(model, labels, delegate)
    rows, clips = [], []
    with Progress(len(files)) as shown:
        for i, f in enumerate(files):
            scores = [w.scores.copy() for w in classify_file(f, classifier, hop_seconds)]
            rows += scores
            clips.append(pool_scores(np.stack(scores), pool))
            if progress:
                shown.show(i + 1, f"  {Path(model).name}: {i + 1}/{len(files)} files")
    return ModelRun(str(model), np.stack(rows), np.stack(clips))


def calibration_files_of(model: str) -> set[str]:
    """File names a built bundle was calibrated on (from its manifest), for keeping evaluation held out."""
    p = Path(model)
    if not is_bundle(p):
        return set()
    return set((load_bundle(p, verify=False).manifest.get("calibration") or {}).get("files") or [])


def evaluate(models: list[str], reference: str, audio: list[str], labels_csv: str | None = None,
             hop_seconds: float = HOP_SECONDS, held_out: bool = False, delegate: str = "cpu",
             class_map: str | None = None, pool: str = DEFAULT_POOL) -> dict:
    files = wav_files(audio)
    excluded: set[str] = set()
    if held_out:
        for m in models:
            excluded |= calibration_files_of(m)
        files = [f for f in files if f.name not in excluded]
    clips = None
    if labels_csv:
        try:
            clips_all = {c.file: c for c in read_labels_csv(Path(labels_csv))}
        except FileNotFoundError:
            raise InputError(f"{labels_csv}: labels CSV not found") from None
        except (ValueError, KeyError) as exc:
            raise InputError(f"{labels_csv}: {exc}") from None
        labelled = [f for f in files if f.name in clips_all]
        if not labelled:
            raise InputError(f"{labels_csv}: none of the {len(files)} WAV files is listed in it")
        clips = [clips_all[f.name] for f in labelled]
        label_index = {f.name: i for i, f in enumerate(files)}
    if not files:
        raise InputError("no WAV files left to evaluate" + (" after holding out calibration files" if held_out else ""))
    say(f"{len(files)} files" + (f" ({len(excluded)} calibration files held out)" if held_out else ""))
    ref = run_model(reference, files, hop_seconds, delegate, class_map, pool=pool)
    runs = [run_model(m, files, hop_seconds, delegate, class_map, pool=pool) for m in models]
    result = {"reference": reference, "files": len(files), "windows": int(len(ref.windows)),
              "hop_seconds": hop_seconds, "pool": pool, "held_out": sorted(excluded) if held_out else [], "models": []}
    if clips is not None:
        rows = [label_index[c.file] for c in clips]
        result["reference_clip_hit_rates"] = hit_rates(ref.clips[rows], clips)
    for run in runs:
        entry = {"model": run.name, "vs_reference": compare_scores(ref.windows, run.windows)}
        if clips is not None:
            entry["clip_hit_rates"] = hit_rates(run.clips[rows], clips)
        result["models"].append(entry)
    if len(runs) > 1:  # the first model against each of the others (e.g. int8 build vs its float rebuild)
        result["pairs"] = [{"reference": runs[0].name, "model": r.name,
                            "comparison": compare_scores(runs[0].windows, r.windows)} for r in runs[1:]]
    return result


def format_table(result: dict) -> str:
    lines = [f"reference: {result['reference']}  ({result['files']} files, {result['windows']} windows, "
             f"hop {result['hop_seconds']} s, clip score = {result['pool']} of its windows)"]
    if result.get("held_out"):
        lines.append(f"held out (calibration) files: {len(result['held_out'])}")
    head = f"{'model':<48} {'top1':>6} {'ref1@5':>7} {'top5ov':>7} {'meanΔ':>8} {'maxΔ':>6}"
    clip = "reference_clip_hit_rates" in result
    if clip:
        head += f" {'clip s@1':>8} {'s@5':>6} {'l@5':>6}"
    lines.append(head)

    def row(name, c, h):
        text = (f"{name[-48:]:<48} {c['top1_agreement']:>6.3f} {c['ref_top1_in_top5']:>7.3f} "
                f"{c['top5_overlap']:>7.3f} {c['mean_abs_diff']:>8.5f} {c['max_abs_diff']:>6.3f}")
        if h:
            text += f" {h['strict_top1']:>8.3f} {h['strict_top5']:>6.3f} {h['lenient_top5']:>6.3f}"
        return text

    if clip:
        h = result["reference_clip_hit_rates"]
        lines.append(f"{'(reference itself)'[:48]:<48} {'':>6} {'':>7} {'':>7} {'':>8} {'':>6} "
                     f"{h['strict_top1']:>8.3f} {h['strict_top5']:>6.3f} {h['lenient_top5']:>6.3f}")
    for m in result["models"]:
        lines.append(row(m["model"], m["vs_reference"], m.get("clip_hit_rates")))
    for p in result.get("pairs", []):
        lines.append(f"{Path(p['reference']).name} as reference for {Path(p['model']).name}:")
        lines.append(row(p["model"], p["comparison"], None))
    lines.append("top1: same top class; ref1@5: reference's top class in the model's top-5; top5ov: top-5 overlap; "
                 "clip s@k/l@k: strict/lenient label in the clip's top-k")
    return "\n".join(lines)


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2)


def add_parser(sub) -> None:
    p = add_command(
        sub, "evaluate", "compare models with a reference over the same windows (and clip hit rates)",
        "Run every --model and the --reference through the same windows of the WAV files/folders given (the "
        "runtime's own framing and front end). Reports window top-1 agreement, whether the reference's top class is "
        "in the model's top-5, top-5 overlap, mean/max absolute score difference, and with --labels-csv "
        "(file,audioset_indices[,lenient_indices]) clip-level top-1/top-5 hit rates. With several --model, the first "
        "is also compared with each of the others (e.g. give the float rebuild first to see how far the int8 model "
        "is from it).",
        ["python -m tools evaluate --model out/yamnet-int8 --model ../shared/models/coral/yamnet_spectra_in.tflite "
         "--reference ../shared/models/yamnet_classification.tflite ../shared/audio ../shared/devset/clips "
         "--labels-csv ../shared/devset/labels.csv --held-out"])
    p.add_argument("audio", nargs="+", metavar="WAV|DIR")
    p.add_argument("--model", action="append", required=True, metavar="MODEL|BUNDLE",
                   help="a model to evaluate (repeatable: side by side)")
    p.add_argument("--reference", required=True, metavar="MODEL|BUNDLE", help="the reference model")
    p.add_argument("--labels-csv", metavar="CSV", help="clip labels: file,audioset_indices[,lenient_indices]")
    p.add_argument("--labels", metavar="CSV", help="class map for plain .tflite models (default: beside each)")
    p.add_argument("--held-out", action="store_true",
                   help="skip the files the bundles were calibrated on (from their manifests)")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help="window hop in seconds (default: %(default)s)")
    p.add_argument("--delegate", default="cpu", help="delegate policy for every model (default: cpu)")
    p.add_argument("--pool", choices=CLIP_POOLS, default=DEFAULT_POOL,
                   help="clip score from its windows: mean or max per class (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON result to FILE")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    hop_samples_for(args.hop)
    result = evaluate(args.model, args.reference, args.audio, args.labels_csv, args.hop, args.held_out,
                      args.delegate, args.labels, args.pool)
    if args.json_out:
        Path(args.json_out).write_text(to_json(result) + "\n")
    print(to_json(result) if args.json else format_table(result))
    return 0
