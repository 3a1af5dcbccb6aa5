"""`build`: a published YAMNet -> a full-int8, patch-input model bundle (Coral-style split).

Sources (tools.model.yamnet_weights.SOURCE_KINDS): the published waveform TFLite model, Coral's int8 twin, or the
original Keras checkpoint yamnet.h5. Steps (each reported on stderr):
  1. read the network's weights out of the source (int8 weights dequantized per channel, batch norm folded);
  2. rebuild the [1, 96, 64] log-mel -> scores body in Keras and measure it against the source on real audio
     (when the source can run: the checkpoint cannot), with the project's front end computing the patches;
  3. bound every layer's activations at a high percentile of what the calibration patches produce, folded
     into the weights (ReLU6, see yamnet_weights.bounded), and quantize to full int8;
  4. give the logits an int8 range fitted to the sigmoid (see tflite_patch);
  5. write the bundle: int8 CPU model, labels, manifest (hashes, front end, provenance, calibration, checks).
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge.app.command import add_command, sayer
from edge.model.bundle import sha256_file, write_manifest
from edge.core.errors import InputError
from edge.model.assets import ASSETS, CLASS_MAP, SOURCES, fetch, mirror_root
from edge.core.frontend import FrontEndParams
from edge.model.labels import find_labels_near, load_labels
from edge.core.stream import HOP_SECONDS
from edge.model.tflite_edit import set_tensor_quantization
from edge.model.tflite_file import read_model_info

from ..audio_windows import collect, patches_of, wav_files
from .check import check_model
from ..eval.compare import compare_scores
from .tflite_patch import range_to_int8
from .yamnet_weights import SOURCE_KINDS, bounded, read_yamnet_layers, source_kind

# Activation bounds per source form, (per "layer" or "channel", percentile), chosen by measuring labelled accuracy
# on the devset (docs/host-tools.md): Coral's twin already holds its activations within [0, 6], so only the
# rarest values are clipped and per channel; the published waveform model's ReLUs are unbounded.
DEFAULT_BOUNDS = {"waveform_tflite": ("layer", 99.9), "patch_int8_tflite": ("channel", 99.99),
                  "keras_h5": ("layer", 99.9)}
LOGIT_FLOOR = -8.0  # sigmoid(-8) = 0.0003, below the int8 output's 1/256 step: lower logits all read 0
CPU_MODEL = "yamnet_int8.tflite"
FLOAT_MODEL = "yamnet_float_rebuild.tflite"
CALIBRATION_PER_CLASS = 2
DEFAULT_SOURCE = "coral"  # the best labelled accuracy on the devset (docs/host-tools.md)

say = sayer("build")


def add_parser(sub) -> None:
    p = add_command(
        sub, "build", "build the full-int8 patch-input YAMNet bundle from a published YAMNet",
        "Read the network out of a published YAMNet (Coral's int8 twin, the waveform-input TFLite model or the Keras "
        "checkpoint yamnet.h5), rebuild it in Keras behind the project's log-mel front end, check the rebuild "
        "against the source on real audio, bound each layer's activations at a percentile of the calibration "
        "activations, quantize to full int8 and write a model bundle (CPU model, labels, manifest with hashes, "
        "front end, provenance and calibration). Needs TensorFlow (pip install -e '.[tools]').",
        ["EDGE_AUDIO_ASSETS=../shared python -m tools build --out out/yamnet-int8",
         "python -m tools build --source ../shared/models/yamnet_classification.tflite --out out/yamnet-wf",
         "python -m tools build --source keras --out out/yamnet-keras    # fetches yamnet.h5 (sha256-pinned)",
         "python -m tools build --calibration my_recordings/ --io int8 --out out/yamnet-int8-io"])
    p.add_argument("--source", metavar="FILE|NAME",
                   help="a YAMNet .tflite or yamnet.h5, or coral | waveform | keras to fetch that published form "
                        f"(sha256-pinned) into out/models (default: {DEFAULT_SOURCE}, the best on the devset)")
    p.add_argument("--out", metavar="DIR", default="out/yamnet-int8", help="bundle folder (default: %(default)s)")
    p.add_argument("--labels", metavar="CSV", help="class map (default: the one beside the source)")
    p.add_argument("--calibration", metavar="WAV|DIR", action="append",
                   help="calibration recordings, repeatable (default: $EDGE_AUDIO_ASSETS/audio plus 2 devset clips "
                        "per class, else out/audio, else generated test signals; the choice is printed)")
    p.add_argument("--io", choices=("float", "int8"), default="float",
                   help="model input/output type (default: float, with QUANTIZE/DEQUANTIZE at the edges)")
    p.add_argument("--percentile", type=float,
                   help="activation bound percentile (default: 99.99 for Coral's twin, 99.9 otherwise)")
    p.add_argument("--bounds", choices=("layer", "channel"),
                   help="one activation bound per layer or per output channel (default: channel for Coral's "
                        "twin, layer otherwise; see docs/host-tools.md for the measured trade-off)")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help="window hop in seconds for calibration audio")
    p.add_argument("--name", default="yamnet-int8", help="bundle name in the manifest")
    p.add_argument("--keep-float", action="store_true",
                   help="also write the float rebuild (yamnet_float_rebuild.tflite) for evaluation")
    p.add_argument("--json", action="store_true", help="print the manifest instead of the folder")
    p.set_defaults(func=cmd_build)


def cmd_build(args) -> int:
    named = args.source is None or args.source in SOURCES
    check_arguments(None if named else args.source, args.calibration, args.io, args.percentile,
                    args.bounds)  # before the slow TensorFlow import
    try:
        from .quantize import load_tensorflow
        load_tensorflow()  # quiet TensorFlow's C++ logging before it starts
    except ImportError:
        raise InputError("build needs TensorFlow: pip install -e '.[tools]'") from None
    if named:  # a published form, fetched with its sha256 pin
        mirror = mirror_root()
        asset = SOURCES[args.source or DEFAULT_SOURCE]
        say(f"fetching {asset.name} (sha256-pinned) into out/models")
        source = fetch(asset, Path("out/models"), mirror)
        fetch(CLASS_MAP, Path("out/models"), mirror)
    else:
        source = Path(args.source)
    manifest = build(source, Path(args.out), Path(args.labels) if args.labels else None, args.calibration,
                     args.io, args.percentile, args.hop, args.name, args.keep_float, args.bounds)
    print(json.dumps(manifest, indent=2) if args.json else args.out)
    return 0


def assets_root() -> Path | None:
    """The asset mirror ($EDGE_AUDIO_ASSETS) when it is a folder."""
    root = mirror_root()
    return root if root is not None and root.is_dir() else None


def devset_calibration_split(devset: Path, per_class: int = CALIBRATION_PER_CLASS) -> tuple[list[Path], list[Path]]:
    """The first `per_class` clips of each class (by file name) calibrate; the rest are held out."""
    with open(devset / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_class: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: r["file"]):
        by_class.setdefault(r.get("source_label") or r["file"], []).append(r["file"])
    calib = {f for files in by_class.values() for f in files[:per_class]}
    clips = devset / "clips"
    return ([clips / f for f in sorted(calib)], [clips / r["file"] for r in rows if r["file"] not in calib])


def synthetic_calibration(dest: Path, seconds: float = 2.0, rate_hz: int = 16000) -> list[Path]:
    """Generated sounds (noise, tones, chirps, clicks) for when no recordings are available. Real recordings
    calibrate much better: pass --calibration."""
    from edge.core.wavfile import write_wav
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    signals = {
        "white_noise": rng.normal(0, 0.1, t.size),
        "pink_noise": np.cumsum(rng.normal(0, 0.02, t.size)) * 0.05,
        "tone_440": 0.3 * np.sin(2 * np.pi * 440 * t),
        "chirp": 0.3 * np.sin(2 * np.pi * (100 + 2000 * t) * t),
        "clicks": (rng.random(t.size) > 0.999) * 0.8,
        "quiet": rng.normal(0, 0.001, t.size),
    }
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for name, x in signals.items():
        path = dest / f"{name}.wav"
        write_wav(path, (np.clip(x, -1, 1) * 32767).astype(np.int16), rate_hz)
        files.append(path)
    return files


def default_calibration(work: Path) -> tuple[list[Path], str]:
    root = assets_root()
    if root is not None and (root / "audio").is_dir():
        files = wav_files([root / "audio"])
        text = f"{root / 'audio'} ({len(files)} files)"
        if (root / "devset" / "labels.csv").is_file():
            calib, held = devset_calibration_split(root / "devset")
            files += calib
            text += (f" + {len(calib)} devset clips ({CALIBRATION_PER_CLASS} per class, first by name; the other "
                     f"{len(held)} are held out for evaluation)")
        return files, f"$EDGE_AUDIO_ASSETS: {text}"
    samples = Path("out/audio")
    if samples.is_dir() and any(samples.glob("*.wav")):
        files = wav_files([samples])
        return files, f"{samples} (the kit's sample recordings, {len(files)} files)"
    files = synthetic_calibration(work / "synthetic_calibration")
    return files, (f"generated test signals ({len(files)} files: noise, tones, chirp, clicks) because no "
                   "recordings were found; pass --calibration DIR with real recordings for a better model")


def _run_source(source: Path, inputs: np.ndarray) -> np.ndarray:
    """The source model's scores for each input (windows for the waveform model, patches for a patch model)."""
    from edge.model.runtime import load_backend
    interpreter = load_backend().Interpreter(model_path=str(source))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scores = np.zeros((len(inputs), int(np.prod(out["shape"]))), np.float32)
    for i, w in enumerate(inputs):
        interpreter.set_tensor(inp["index"], w.reshape(inp["shape"]).astype(inp["dtype"]))
        interpreter.invoke()
        scores[i] = interpreter.get_tensor(out["index"]).reshape(-1)
    return scores


def check_arguments(source: str | Path | None, calibration: list[str] | None, io_type: str,
                    percentile: float | None, bounds_per: str | None = None) -> None:
    if io_type not in ("float", "int8"):
        raise InputError(f"--io must be float or int8, not {io_type!r}")
    if percentile is not None and not 50.0 <= percentile <= 100.0:
        raise InputError(f"--percentile {percentile} is out of range (50 to 100)")
    if bounds_per not in (None, "layer", "channel"):
        raise InputError(f"--bounds must be layer or channel, not {bounds_per!r}")
    if source is not None:
        source_kind(source)
    if calibration:
        wav_files(calibration)


def build(source: Path, out: Path, labels: Path | None = None, calibration: list[str] | None = None,
          io_type: str = "float", percentile: float | None = None, hop_seconds: float = HOP_SECONDS,
          name: str = "yamnet-int8", keep_float: bool = False, bounds_per: str | None = None) -> dict:
    """Build the bundle into `out`; returns the manifest. Bounds and percentile default by source form."""
    started = time.monotonic()
    check_arguments(source, calibration, io_type, percentile, bounds_per)
    default_per, default_percentile = DEFAULT_BOUNDS[source_kind(source)]
    bounds_per = bounds_per or default_per
    percentile = default_percentile if percentile is None else percentile
    labels, weights = _read_source(source, labels)
    out.mkdir(parents=True, exist_ok=True)
    windows, calibration_record = _calibration_windows(calibration, hop_seconds)
    patches = patches_of(windows)
    calibration_record["log_mel_range"] = [round(float(patches.min()), 4), round(float(patches.max()), 4)]
    say(f"  {len(windows)} windows -> log-mel patches with the project's front end")
    faithfulness, quantization = _rebuild_and_quantize(weights, source, windows, patches, percentile, bounds_per,
                                                       io_type, out, keep_float)
    shutil.copyfile(labels, out / labels.name)

    report = check_model(out / CPU_MODEL)
    (out / "check.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    write_manifest(out, _manifest(name, labels, quantization, source_record(source, weights.kind), hop_seconds,
                                  calibration_record, faithfulness, report))
    say(f"wrote {out} ({CPU_MODEL}: {report.size_bytes / 1e6:.2f} MB, {len(report.ops)} ops; "
        f"check: {'one Edge TPU subgraph' if report.single_tpu_subgraph else 'NOT fully mappable'}) "
        f"in {time.monotonic() - started:.0f} s")
    return json.loads((out / "manifest.json").read_text())


def _read_source(source: Path, labels: Path | None):
    """The class map (given, or beside the source) and the network's weights, checked against each other."""
    labels = labels or find_labels_near(source)
    if labels is None:
        raise InputError(f"{source}: no class map beside the model (yamnet_class_map.csv); pass --labels")
    label_list = load_labels(labels)
    say(f"reading weights from {source}: {SOURCE_KINDS[source_kind(source)]}")
    weights = read_yamnet_layers(source)
    if len(label_list) != weights.dense_bias.shape[0]:
        raise InputError(f"{labels}: {len(label_list)} labels but the model has {weights.dense_bias.shape[0]} "
                         "classes")
    say(f"  27 conv layers + classifier: {weights.int8_tensors} int8 tensors dequantized with their scales, "
        f"{weights.float_tensors} float tensors kept" + (", activations clipped where the source clips them"
                                                         if weights.caps else ""))
    return labels, weights


def _rebuild_and_quantize(weights, source: Path, windows: np.ndarray, patches: np.ndarray, percentile: float,
                          bounds_per: str, io_type: str, out: Path, keep_float: bool) -> tuple[dict, dict]:
    """The float rebuild measured against the source, then bounded and quantized to the int8 CPU model in `out`:
    (faithfulness, quantization record)."""
    from . import quantize as q
    float_model = q.keras_body(weights)
    faithfulness = _measure_rebuild(float_model, source, weights.kind, windows, patches)
    say(f"bounding activations at p{percentile:g} of the calibration activations, per {bounds_per}")
    bounds = q.activation_bounds(weights, patches, percentile, per_channel=bounds_per == "channel")
    quantization = _quantize(bounded(weights, bounds), patches, io_type, out / CPU_MODEL)
    quantization.update(activation_bound_percentile=percentile, activation_bounds_per=bounds_per,
                        activation_bounds=[round(float(np.max(b)), 4) for b in bounds])  # per layer (largest)
    if keep_float:
        (out / FLOAT_MODEL).write_bytes(q.to_tflite_float(float_model))
    return faithfulness, quantization


def _manifest(name: str, labels: Path, quantization: dict, source: dict, hop_seconds: float,
              calibration_record: dict, faithfulness: dict, report) -> dict:
    """What the bundle records: models, labels, front end, quantization, source, provenance, calibration, checks."""
    import tensorflow as tf
    return {
        "name": name,
        "input_kind": "logmel_patch",
        "frontend": FrontEndParams().to_dict(),
        "models": {"cpu": CPU_MODEL},
        "labels": labels.name,
        "quantization": quantization,
        "compiler": None,
        "source": source,
        "provenance": {"tool": "python -m tools build", "tensorflow": tf.__version__,
                       "built_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "hop_seconds": hop_seconds},
        "calibration": calibration_record,
        "faithfulness": {"float_rebuild_vs_source_on_calibration_windows": faithfulness} if faithfulness else
                        {"not_measured": "the source is a checkpoint, not a model that runs here"},
        "check": {"predicted_tpu_ops": len(report.predicted_tpu_ops),
                  "predicted_cpu_ops": len(report.predicted_cpu_ops),
                  "parameter_bytes": report.parameter_bytes},
        "size_bytes": report.size_bytes,
    }


def _calibration_windows(calibration: list[str] | None, hop_seconds: float) -> tuple[np.ndarray, dict]:
    with tempfile.TemporaryDirectory() as scratch:  # generated calibration signals, if it comes to that
        if calibration:
            files, text = wav_files(calibration), "given: " + ", ".join(map(str, calibration))
        else:
            files, text = default_calibration(Path(scratch))
        say(f"calibration audio: {text}")
        windows, per_file = collect(files, hop_seconds, "calibration audio")
    if len(windows) < 8:
        raise InputError(f"calibration audio gives only {len(windows)} windows; give at least 8 s of audio")
    return windows, {"description": text, "files": [p.name for p, _ in per_file], "windows": int(len(windows))}


def source_record(source: Path, kind: str) -> dict:
    """What the bundle was built from: file, sha256, form, and where it is published when the hash is pinned."""
    digest = sha256_file(source)
    published = next((a.url for a in ASSETS.values() if a.sha256 == digest), None)
    return {"model": source.name, "sha256": digest, "kind": kind, "published": published}


def _measure_rebuild(float_model, source: Path, kind: str, windows: np.ndarray, patches: np.ndarray) -> dict:
    """The float rebuild (fed by the project's front end) against the source model (fed the same windows, or
    the same patches for a patch-input source). Empty for a checkpoint, which does not run on its own here."""
    from . import quantize as q
    if kind == "keras_h5":
        say("the source is a checkpoint: no source model to compare the float rebuild with")
        return {}
    say("comparing the float Keras rebuild with the source model")
    source_scores = _run_source(source, windows if kind == "waveform_tflite" else patches)
    faithfulness = compare_scores(source_scores, q.run_keras(float_model, patches)[0])
    say(f"  float rebuild vs source over {len(windows)} calibration windows: top-1 agreement "
        f"{faithfulness['top1_agreement']:.3f}, source top-1 in rebuild top-5 "
        f"{faithfulness['ref_top1_in_top5']:.3f}, mean/max abs score diff "
        f"{faithfulness['mean_abs_diff']:.5f}/{faithfulness['max_abs_diff']:.3f}")
    return faithfulness


def _quantize(bounded_weights, patches: np.ndarray, io_type: str, path: Path) -> dict:
    """Full-int8 model of the bounded network at `path`, with the logits' range fitted to the sigmoid."""
    from . import quantize as q
    logits = q.run_keras(q.keras_body(bounded_weights, relu6=True, with_activations=True), patches)[1]
    say(f"quantizing to full int8 (input/output {io_type})")
    model_bytes = q.to_tflite_int8(q.keras_body(bounded_weights, relu6=True), patches, io_type)
    path.write_bytes(model_bytes)
    fc = [op for op in read_model_info(path).operators if op.name == "FULLY_CONNECTED"][-1]
    logit_range = (LOGIT_FLOOR, float(logits.max()))
    path.write_bytes(set_tensor_quantization(model_bytes, fc.outputs[0], *range_to_int8(*logit_range)))
    info = read_model_info(path)
    return {
        "scheme": "full int8 post-training quantization, per-channel weights, activations bounded by folding",
        "input": {"dtype": info.inputs[0].dtype, "shape": info.inputs[0].shape,
                  "scale": info.inputs[0].scale, "zero_point": info.inputs[0].zero_point},
        "output": {"dtype": info.outputs[0].dtype, "shape": info.outputs[0].shape,
                   "scale": info.outputs[0].scale, "zero_point": info.outputs[0].zero_point},
        "logit_range": [round(v, 4) for v in logit_range],
    }
