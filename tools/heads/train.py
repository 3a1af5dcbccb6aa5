"""`train-head`: teach the kit new sounds, and export them as one int8 model bundle.

    DIR/<class name>/*.wav          any rate, any length, any channel count
    --background DIR                other sounds: an explicit "background" class, and mixed into training audio

Steps (each reported on stderr): check every recording; split train/held-out by file (never by window); compute
embeddings with the kit's own front end and the base model's network (cached by file hash), for each training
file as it is and as augmented copies (time shift, gain, background mixing); train a small head with class
balancing; export backbone + head as one fully int8 model (tools.heads.export); measure the float head and the
int8 model on the held-out files (the int8 one through the runtime, as the device runs it); choose per-class
start thresholds for a target precision; pick a self-test clip; write the bundle, report.json and
confusion.png.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge.app.command import add_command, sayer
from edge.model.recordings import classify_file
from edge.core.clip import CLIP_POOLS, pool_scores
from edge.core.console import Progress
from edge.core.errors import InputError
from edge.core.frontend import FrontEndParams
from edge.core.stream import HOP_SECONDS
from edge.core.wavfile import write_wav
from edge.model.bundle import sha256_file, write_manifest
from edge.model.classifier import Classifier

from ..audio_windows import file_windows, patches_of
from ..model.check import check_model
from ..eval.compare import compare_scores
from .embeddings import AUGMENT_RECIPE, Augmenter, Backbone, EmbeddingStore, mono_16k, quiet_signals
from .model import HeadParams, fit_head, predict
from .report import choose_thresholds, evaluate, format_report
from ..png_chart import confusion_png
from .sound_folders import BACKGROUND, check_readable, discover, split

DEFAULT_BASE = Path("out/yamnet-int8")
DEFAULT_CACHE = Path("out/embeddings")
MODEL_FILE = "sounds_int8.tflite"
LABELS_FILE = "labels.txt"
AUDIOSET_LABELS = "yamnet_class_map.csv"
SELFTEST_FILE = "selftest.wav"
SELFTEST_SECONDS = 5.0
CALIBRATION_WINDOWS = 400
SILENT_DBFS = -70.0  # a window quieter than this is silence, whatever folder its recording is in


say = sayer("train-head")


def training_set(train: list, store: EmbeddingStore, augmenter: Augmenter, copies: int,
                 backgrounds: list[Path], background: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of every training window, as recorded and in `copies` augmented versions. Windows quieter
    than SILENT_DBFS go to the background class (index `background`) or, without one, are left out; the
    background class also gets silence and very quiet noise."""
    signals: list = []
    bg_id = hashlib.sha256("".join(sorted(sha256_file(p) for p in backgrounds)).encode()).hexdigest()[:8]

    def background_signals() -> list:
        if not signals and backgrounds:
            signals.extend(mono_16k(p) for p in backgrounds)
        return signals

    xs, ys = [], []
    shown = Progress(len(train))
    for i, (path, c) in enumerate(train):
        parts = [store.get(path)]
        for k in range(1, copies + 1):
            variant = f"aug{AUGMENT_RECIPE}-{k}-s{augmenter.seed}-bg{bg_id}"
            parts.append(store.get(path, variant, lambda signal, digest, k=k: augmenter.apply(
                signal, digest, k, background_signals(), store.hop_seconds)))
        for part in parts:  # silent windows (gaps in a recording) are not its class: background, or left out
            silent = part.levels_dbfs <= SILENT_DBFS
            labels = np.where(silent, -1 if background is None else background, c)
            xs.append(part.embeddings[labels >= 0])
            ys.append(labels[labels >= 0])
        shown.show(i + 1, f"  training embeddings (files): {i + 1}/{len(train)}")
    shown.end()
    if background is not None:  # nothing happening is background too
        for name, signal in quiet_signals().items():
            xs.append(store.of_signal(lambda signal=signal: signal, f"generated-{name}", "orig").embeddings)
            ys.append(np.full(len(xs[-1]), background))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def calibration_patches(train: list, limit: int = CALIBRATION_WINDOWS, hop: float = HOP_SECONDS) -> np.ndarray:
    """Up to `limit` log-mel patches spread over the training files, for the int8 quantizer."""
    windows = np.concatenate([file_windows(path, hop) for path, _ in train])
    pick = np.linspace(0, len(windows) - 1, min(limit, len(windows))).round().astype(int)
    return patches_of(windows[np.unique(pick)])


def runtime_scores(bundle: Path, files: list[Path], hop: float, what: str = "") -> list[np.ndarray]:
    """Window scores of each file through the runtime (front end + the bundle's int8 model), as on a device."""
    classifier = Classifier.open(bundle, None, "cpu")
    out = []
    with Progress(len(files)) as shown:
        for i, f in enumerate(files):
            out.append(np.stack([w.scores.copy() for w in classify_file(f, classifier, hop)]))
            if what:
                shown.show(i + 1, f"  {what}: {i + 1}/{len(files)}")
    return out


def pick_selftest(out: Path, held: list, scores: list, classes: list[str], pool: str) -> dict | None:
    """The held-out recording the int8 model gets right by the widest margin, as a 16 kHz mono clip in the
    bundle (at most SELFTEST_SECONDS), checked again through the runtime once written."""
    margins = []
    for (path, c), s in zip(held, scores):
        clip = pool_scores(s, pool)
        if classes[c] != BACKGROUND and int(np.argmax(clip)) == c:
            margins.append((float(clip[c] - np.max(np.delete(clip, c))), path, c))
    for _, path, c in sorted(margins, key=lambda m: -m[0]):
        write_wav(out / SELFTEST_FILE, mono_16k(path)[:int(SELFTEST_SECONDS * 16000)], 16000)
        check = runtime_scores(out, [out / SELFTEST_FILE], HOP_SECONDS)[0]
        if int(np.argmax(pool_scores(check, pool))) == c:
            return {"clip": SELFTEST_FILE, "expected": classes[c], "recording": path.name}
    (out / SELFTEST_FILE).unlink(missing_ok=True)
    return None


def choose_pool(int8_eval: dict) -> str:
    """The clip pooling that classified more held-out files correctly with the int8 model; on a tie "max" (on
    the devset it was never worse for a trained head: silence between the sounds drags a mean down)."""
    accuracy = {p: int8_eval["clip"][p]["accuracy"] for p in CLIP_POOLS}
    return "mean" if accuracy["mean"] > accuracy["max"] else "max"


def trained_manifest(report: dict, check, backbone: Backbone, train: list, held: list, x: np.ndarray,
                     params: HeadParams, augmenter: Augmenter, copies: int, held_out: str, val_fraction: float,
                     hop: float) -> dict:
    """What the bundle records about its training and measurement (beside models, labels and hashes)."""
    import tensorflow as tf
    classes, pool = report["classes"], report["pool"]
    return {
        "thresholds": {k: v["threshold"] for k, v in report["thresholds"].items()},
        "check": {"predicted_tpu_ops": len(check.predicted_tpu_ops), "predicted_cpu_ops": len(check.predicted_cpu_ops),
                  "parameter_bytes": check.parameter_bytes},
        "size_bytes": check.size_bytes,
        "base": {"name": backbone.name, "model": backbone.model_path.name, "sha256": sha256_file(backbone.model_path)},
        "training": {"classes": classes, "background_class": BACKGROUND in classes,
                     "train_files": {c: sum(1 for _, k in train if classes[k] == c) for c in classes},
                     "held_out_files": {c: sum(1 for _, k in held if classes[k] == c) for c in classes},
                     "held_out": held_out, "val_fraction": val_fraction, "windows": int(len(x)),
                     "augmented_copies": copies,
                     "augmentation": vars(augmenter) | {"recipe": AUGMENT_RECIPE, "time_shift": "up to one hop"},
                     "silent_dbfs": SILENT_DBFS, "head": params.to_dict()},
        "evaluation": {"pool": pool, "float_head_clip_accuracy": report["float_head"]["clip"][pool]["accuracy"],
                       "int8_clip_accuracy": report["int8_export"]["clip"][pool]["accuracy"],
                       "int8_window_accuracy": report["int8_export"]["window_accuracy"],
                       "target_precision": report["target_precision"], "thresholds": report["thresholds"]},
        "provenance": {"tool": "python -m tools train-head", "tensorflow": tf.__version__,
                       "built_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "hop_seconds": hop},
    }


def train_head(data: Path, out: Path, base: Path | None = None, val: Path | None = None,
               background: Path | None = None, params: HeadParams = HeadParams(), copies: int = 2,
               val_fraction: float = 0.25, target_precision: float = 0.9, audioset: bool = False,
               pool: str | None = None, cache: Path = DEFAULT_CACHE, name: str | None = None,
               hop: float = HOP_SECONDS) -> dict:
    """Train, export and measure; returns the report (also written to out/report.json)."""
    started = time.monotonic()
    dataset, train, held = _recordings(data, val, background, val_fraction, params.seed)
    classes = dataset.classes
    backbone = Backbone.open(base or DEFAULT_BASE)
    say(f"backbone: {backbone.name} ({backbone.model_path.name}); embeddings cached in {cache}")
    store = EmbeddingStore(cache, backbone, hop)
    augmenter = Augmenter(seed=params.seed)
    x, y = training_set(train, store, augmenter, copies, dataset.files.get(BACKGROUND, []),
                        classes.index(BACKGROUND) if BACKGROUND in classes else None)
    say(f"{len(x)} training windows ({copies} augmented copies per file); embeddings computed {store.computed}, "
        f"reused from the cache {store.reused}")
    head = fit_head(x, y, len(classes), params)
    float_scores = [predict(head, store.get(p).embeddings) for p, _ in held]
    manifest = _export(out, backbone, head, classes, train, hop, audioset, base or DEFAULT_BASE, name)
    report, int8_scores = _measure(out, backbone, classes, train, held, float_scores, target_precision, audioset,
                                   pool, hop)
    selftest = pick_selftest(out, held, int8_scores, classes, report["pool"])
    check = check_model(out / MODEL_FILE)
    (out / "check.json").write_text(json.dumps(check.to_dict(), indent=2) + "\n")
    manifest.update(trained_manifest(report, check, backbone, train, held, x, params, augmenter, copies,
                                     "split by file" if val is None else str(val), val_fraction, hop))
    _write_results(out, manifest, report, check, selftest)
    say(f"wrote {out} ({MODEL_FILE}: {check.size_bytes / 1e6:.2f} MB; check: "
        f"{'one Edge TPU subgraph' if check.single_tpu_subgraph else 'NOT fully mappable'}; report.json, "
        f"confusion.png) in {time.monotonic() - started:.0f} s")
    return report


def _recordings(data: Path, val: Path | None, background: Path | None, val_fraction: float, seed: int):
    """The classes' recordings, every one checked, split into (training, held-out) files: by file, or --val."""
    dataset = discover(data, background)
    if val is not None:
        held_set = discover(val, None, "--val")
        unknown = sorted(set(held_set.files) - set(dataset.files))
        if unknown:
            raise InputError(f"--val {val}: class {unknown[0]!r} is not among the training classes")
    classes = dataset.classes
    if len(classes) < 2:
        raise InputError(f"--data {data}: one class ({classes[0]}); give at least two classes, or one and "
                         "--background DIR")
    everything = [f for fs in dataset.files.values() for f in fs]
    everything += [f for fs in held_set.files.values() for f in fs] if val is not None else []
    check_readable(everything)
    if val is None:
        train, held = split(dataset, val_fraction, seed)
    else:
        train = [(f, classes.index(c)) for c in classes for f in dataset.files[c]]
        held = [(f, classes.index(c)) for c in held_set.classes for f in held_set.files[c]]
    say(f"{len(classes)} classes ({', '.join(classes)}): {len(train)} training and {len(held)} held-out files"
        + (" (split by file)" if val is None else f" (held out: {val})"))
    return dataset, train, held


def _export(out: Path, backbone: Backbone, head, classes: list[str], train: list, hop: float, audioset: bool,
            base: Path, name: str | None) -> dict:
    """Backbone + head as one int8 model in `out` (quantized on patches of the training files), with its labels
    and a first manifest (returned)."""
    say("exporting backbone + head as one int8 model")
    from .export import export_int8
    model_bytes, quantization = export_int8(backbone, head, len(classes), calibration_patches(train, hop=hop),
                                            audioset)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(model_bytes)
    (out / LABELS_FILE).write_text("\n".join(classes) + "\n")
    manifest = {"name": name or out.name, "input_kind": "logmel_patch",
                "description": f"YAMNet + a head trained for: {', '.join(c for c in classes if c != BACKGROUND)}",
                "frontend": backbone.manifest.get("frontend") or FrontEndParams().to_dict(),
                "models": {"cpu": MODEL_FILE}, "labels": LABELS_FILE, "quantization": quantization,
                "compiler": None}
    if audioset:
        shutil.copyfile(base_labels(base), out / AUDIOSET_LABELS)
        manifest["outputs"] = [{"name": "classes", "labels": LABELS_FILE},
                               {"name": "audioset", "labels": AUDIOSET_LABELS}]
    write_manifest(out, manifest)
    return manifest


def _measure(out: Path, backbone: Backbone, classes: list[str], train: list, held: list, float_scores: list,
             target_precision: float, audioset: bool, pool: str | None, hop: float) -> tuple[dict, list]:
    """The float head and the exported int8 model (through the runtime) on the held-out files, the clip pooling
    and the per-class thresholds: (report, the int8 model's window scores per held-out file)."""
    held_files, held_labels = [p for p, _ in held], [c for _, c in held]
    int8_scores = runtime_scores(out, held_files, hop, "int8 model on the held-out files")
    float_eval, int8_eval = evaluate(float_scores, held_labels, classes), evaluate(int8_scores, held_labels, classes)
    pool_given = pool is not None
    pool = pool or choose_pool(int8_eval)
    report = {"classes": classes, "pool": pool, "pool_chosen": "given" if pool_given else "measured",
              "target_precision": target_precision, "float_head": float_eval, "int8_export": int8_eval,
              "train": [{"file": str(p), "class": classes[c]} for p, c in train],
              "held_out": [{"file": str(p), "class": classes[c]} for p, c in held]}
    report["thresholds"] = choose_thresholds(int8_scores, held_labels, classes, target_precision, (BACKGROUND,))
    if audioset:
        from .export import run_outputs
        patches = patches_of(np.concatenate([file_windows(p, hop) for p in held_files]))
        report["audioset_vs_base"] = compare_scores(run_outputs(backbone.model_path, patches)[0],
                                                    run_outputs(out / MODEL_FILE, patches)[1])
    return report, int8_scores


def _write_results(out: Path, manifest: dict, report: dict, check, selftest: dict | None) -> None:
    """The final manifest (with the self-test clip, when one was found), report.json and confusion.png."""
    pool = report["pool"]
    manifest["clip_pool"] = pool
    if selftest:  # exactly the keys a self-test reads; where the clip came from goes with the training record
        manifest["selftest"] = {"clip": selftest["clip"], "expected": selftest["expected"]}
        manifest["training"]["selftest_recording"] = selftest["recording"]
    write_manifest(out, manifest)
    report.update(bundle=str(out), selftest=selftest, single_tpu_subgraph=check.single_tpu_subgraph)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    confusion_png(out / "confusion.png", report["int8_export"]["clip"][pool]["confusion"], report["classes"],
                  f"int8 model, held-out clips ({pool})")


def base_labels(base: Path) -> Path:
    from edge.model.bundle import resolve_model
    return resolve_model(base).labels


def cmd_train_head(args) -> int:
    if args.epochs < 1:
        raise InputError("--epochs must be at least 1")
    if not 0.0 < args.val_fraction < 1.0:
        raise InputError("--val-fraction must be between 0 and 1")
    if not 0.0 < args.target_precision <= 1.0:
        raise InputError("--target-precision must be between 0 and 1")
    if args.augment < 0 or args.hidden < 0 or not 0.0 <= args.dropout < 1.0:
        raise InputError("--augment and --hidden must be 0 or more, --dropout between 0 and 1")
    # every check on the recordings before the slow TensorFlow import (train_head checks again)
    dataset = discover(Path(args.data), Path(args.background) if args.background else None)
    if len(dataset.classes) < 2:
        raise InputError(f"--data {args.data}: one class ({dataset.classes[0]}); give at least two classes, or one "
                         "and --background DIR")
    check_readable([f for files in dataset.files.values() for f in files])
    base = Path(args.base) if args.base else DEFAULT_BASE
    if not base.exists():
        raise InputError(f"--base {base}: not found; build the kit's own YAMNet first (python -m tools build "
                         f"--out {DEFAULT_BASE}) or pass --base BUNDLE")
    try:
        from ..model.quantize import load_tensorflow
        load_tensorflow()
    except ImportError:
        raise InputError("train-head needs TensorFlow: pip install -e '.[tools]'") from None
    params = HeadParams(epochs=args.epochs, hidden=args.hidden, dropout=args.dropout, seed=args.seed)
    report = train_head(Path(args.data), Path(args.out), base, Path(args.val) if args.val else None,
                        Path(args.background) if args.background else None, params, args.augment,
                        args.val_fraction, args.target_precision, args.audioset, args.pool, Path(args.cache),
                        args.name, args.hop)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def add_parser(sub) -> None:
    p = add_command(
        sub, "train-head", "teach it your own sounds: train a head on YAMNet embeddings, export one int8 bundle",
        "Train a small classifier on YAMNet embeddings for the sounds in DIR/<class name>/*.wav (any rate, length or "
        "channel count), measure it on held-out files (split by file), and export backbone + head as one fully int8 "
        "model bundle with its labels, per-class start thresholds and a self-test clip: edge-audio classify and run "
        "use it as it is. Needs TensorFlow and a base model (python -m tools build).",
        ["python -m tools train-head --data my_sounds --out out/my-sounds",
         "python -m tools train-head --data my_sounds --background other_sounds --epochs 60 --audioset",
         "python -m tools train-head --data train/ --val held_out/ --target-precision 0.95 --json",
         "edge-audio classify rec.wav --model out/my-sounds"])
    p.add_argument("--data", required=True, metavar="DIR", help="one folder of WAV files per class")
    p.add_argument("--val", metavar="DIR", help="held-out recordings, laid out like --data (default: hold out "
                                                "--val-fraction of each class's files)")
    p.add_argument("--val-fraction", type=float, default=0.25, metavar="F",
                   help="share of each class's files held out when there is no --val (default: %(default)s)")
    p.add_argument("--background", metavar="DIR", help="other sounds: a 'background' class (with silence and "
                                                       "quiet noise added), and mixed into the training audio")
    p.add_argument("--out", default="out/my-sounds", metavar="BUNDLE", help="bundle folder (default: %(default)s)")
    p.add_argument("--base", metavar="BUNDLE", help=f"the YAMNet to build on: a bundle from 'python -m tools "
                                                    f"build' or Coral's int8 twin (default: {DEFAULT_BASE})")
    p.add_argument("--epochs", type=int, default=HeadParams.epochs, help="training epochs (default: %(default)s)")
    p.add_argument("--hidden", type=int, default=0, metavar="N", help="a hidden dense layer of N units (default: "
                                                                      "none)")
    p.add_argument("--dropout", type=float, default=HeadParams.dropout, help="dropout (default: %(default)s)")
    p.add_argument("--augment", type=int, default=2, metavar="N",
                   help="augmented copies per training file: time shift, gain, background mixing (default: "
                        "%(default)s)")
    p.add_argument("--target-precision", type=float, default=0.9, metavar="P",
                   help="per-class start thresholds reach this precision on held-out windows (default: "
                        "%(default)s)")
    p.add_argument("--audioset", action="store_true", help="also output YAMNet's 521 AudioSet scores (second output)")
    p.add_argument("--pool", choices=CLIP_POOLS,
                   help="how the bundle pools a file's windows into a clip score (classify's default for it; "
                        "default: whichever classifies more held-out files correctly)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), metavar="DIR", help="embedding cache (default: "
                                                                              "%(default)s)")
    p.add_argument("--name", help="bundle name in the manifest (default: the folder's name)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, augmentation and training")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help="window hop in seconds (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_train_head)
