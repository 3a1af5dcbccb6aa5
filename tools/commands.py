"""`python -m tools COMMAND`: host-side model work (train-head's parser lives in tools/heads/train.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.app.command import OneLineParser, run
from edge.core.clip import CLIP_POOLS, DEFAULT_POOL
from edge.model import assets
from edge.core.stream import HOP_SECONDS

PROG = "python -m tools"


def _model_file(path: str) -> Path:
    """A .tflite as given, or a bundle's CPU model."""
    from edge.model.bundle import model_files
    p = Path(path)
    return model_files(p)[0].cpu if p.is_dir() else p


# `build --source NAME` and `fetch NAME`: the published YAMNet forms, fetched with sha256 pins
SOURCE_ASSETS = assets.SOURCES
DEFAULT_SOURCE = "coral"  # the best labelled accuracy on the devset (README "Host tools")


def cmd_build(args) -> int:
    from .model.build import build, check_arguments
    from edge.core.errors import InputError
    named = args.source is None or args.source in SOURCE_ASSETS
    check_arguments(None if named else args.source, args.calibration, args.io, args.percentile,
                    args.bounds)  # before the slow TensorFlow import
    try:
        from .model.quantize import load_tensorflow
        load_tensorflow()  # quiet TensorFlow's C++ logging before it starts
    except ImportError:
        raise InputError("build needs TensorFlow: pip install -e '.[tools]'") from None
    if named:
        mirror = assets.mirror_root()
        asset = SOURCE_ASSETS[args.source or DEFAULT_SOURCE]
        print(f"build: fetching {asset.name} (sha256-pinned) into out/models", file=sys.stderr)
        source = assets.fetch(asset, Path("out/models"), mirror)
        assets.fetch(assets.CLASS_MAP, Path("out/models"), mirror)
    else:
        source = Path(args.source)
    manifest = build(source, Path(args.out), Path(args.labels) if args.labels else None, args.calibration,
                     args.io, args.percentile, args.hop, args.name, args.keep_float,
                     args.bounds)
    print(json.dumps(manifest, indent=2) if args.json else args.out)
    return 0


def cmd_check(args) -> int:
    from .model.check import check_model, format_report
    report = check_model(_model_file(args.model))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


def cmd_inspect(args) -> int:
    from .model.report import format_inspect, inspect_model
    from edge.model.bundle import is_bundle, load_bundle
    path = Path(args.model)
    if is_bundle(path):  # every model in it, with the manifest's summary
        b = load_bundle(path)
        models = [inspect_model(m) for m in (b.edgetpu_model, b.cpu_model) if m is not None]
        summary = {"bundle": str(path), "name": b.name, "input_kind": b.input_kind, "labels": b.labels.name,
                   "compiler": (b.manifest.get("compiler") or {}).get("version"), "models": models}
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(f"bundle {path}: {b.name}, {b.input_kind} input, labels {b.labels.name}, "
                  f"{'Edge TPU + CPU models' if b.edgetpu_model else 'CPU model only'}; hashes verified")
            print("\n".join(format_inspect(m) for m in models))
        return 0
    d = inspect_model(_model_file(args.model))
    print(json.dumps(d, indent=2) if args.json else format_inspect(d))
    return 0


def cmd_compile(args) -> int:
    from .model.compile import compile_bundle
    status, manifest = compile_bundle(Path(args.model), Path(args.out), args.compiler, args.require_edgetpu,
                                      Path(args.labels) if args.labels else None)
    print(json.dumps(manifest, indent=2) if args.json else args.out)
    return status


def cmd_evaluate(args) -> int:
    from .eval.evaluate import evaluate, format_table, to_json
    from edge.core.stream import hop_samples_for
    hop_samples_for(args.hop)
    result = evaluate(args.model, args.reference, args.audio, args.labels_csv, args.hop, args.held_out,
                      args.delegate, args.labels, args.pool)
    if args.json_out:
        Path(args.json_out).write_text(to_json(result) + "\n")
    print(to_json(result) if args.json else format_table(result))
    return 0


def cmd_speed(args) -> int:
    from .eval.speed import format_speed, measure
    rows = measure(args.model, args.seconds, args.threads)
    print(json.dumps(rows, indent=2) if args.json else format_speed(rows))
    return 0


def _sub(sub, name, help_text, description, examples):
    return sub.add_parser(name, help=help_text, description=description,
                          epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def cmd_demo(args) -> int:
    from .bench.demo import run_demo
    return run_demo(Path(args.audio), args.model, not args.fast)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Host tools for the edge audio kit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    from edge.app.fetch import add_parser as add_fetch_parser
    add_fetch_parser(sub, PROG)
    from .deploy.host import add_parser as add_deploy_parser
    add_deploy_parser(sub)
    from .deploy.wheelhouse import add_parser as add_wheelhouse_parser
    add_wheelhouse_parser(sub)

    p = sub.add_parser("demo", help="the whole chain: local broker, daemon on sample audio, monitor",
                       description="Start a local Mosquitto on a free loopback port, run the daemon on sample "
                                   "recordings replayed like a microphone, and print what the monitor receives.",
                       epilog="example: python -m tools demo --audio out/audio")
    p.add_argument("--audio", default="out/audio", metavar="DIR", help="folder with miaow_16k.wav and "
                                                                         "speech_whistling2.wav (python -m tools "
                                                                         "fetch samples)")
    p.add_argument("--model", metavar="BUNDLE", help="model bundle (default: the installed one)")
    p.add_argument("--fast", action="store_true", help="do not pace the replay at real time")
    p.set_defaults(func=cmd_demo)

    p = _sub(sub, "build", "build the full-int8 patch-input YAMNet bundle from a published YAMNet",
             "Read the network out of a published YAMNet (Coral's int8 twin, the waveform-input TFLite model or "
             "the Keras checkpoint yamnet.h5), rebuild it in Keras behind the project's log-mel front end, check "
             "the rebuild against the source on real audio, bound each layer's activations at a percentile of "
             "the calibration activations, quantize to full int8 and write a model bundle (CPU model, labels, "
             "manifest with hashes, front end, provenance and calibration). Needs TensorFlow "
             "(pip install -e '.[tools]').",
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
                        "twin, layer otherwise; see the README for the measured trade-off)")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help="window hop in seconds for calibration audio")
    p.add_argument("--name", default="yamnet-int8", help="bundle name in the manifest")
    p.add_argument("--keep-float", action="store_true",
                   help="also write the float rebuild (yamnet_float_rebuild.tflite) for evaluation")
    p.add_argument("--json", action="store_true", help="print the manifest instead of the folder")
    p.set_defaults(func=cmd_build)

    p = _sub(sub, "check", "static Edge TPU compatibility report (no compiler needed)",
             "Per operator: can the Edge TPU compiler map it, and why not (type not int8/uint8, unsupported op, "
             "dynamic shape, unsupported parameters); the predicted split (everything from the first unmappable "
             "op runs on the CPU; input QUANTIZE/output DEQUANTIZE are listed apart) and the parameter size "
             "against the ~8 MiB on-chip cache.",
             ["python -m tools check out/yamnet-int8", "python -m tools check model.tflite --json"])
    p.add_argument("model", metavar="MODEL|BUNDLE")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_check)

    p = _sub(sub, "compile", "compile a model or bundle for the Edge TPU (keeps the CPU model as fallback)",
             "Run edgetpu_compiler (x86-64 Linux), parse its operation log, check the output holds the Edge TPU "
             "op and write a bundle recording the compiler version, mapped/CPU op counts and on-chip memory. "
             "The CPU model always stays in the bundle. Without the compiler: the CPU bundle and the static "
             "report are written and the exit status is 0 (2 with --require-edgetpu).",
             ["python -m tools compile out/yamnet-int8 --out out/yamnet-int8-tpu",
              "python -m tools compile model.tflite --labels labels.csv --out out/tpu --compiler /opt/edgetpu_compiler"])
    p.add_argument("model", metavar="MODEL|BUNDLE")
    p.add_argument("--out", metavar="DIR", required=True, help="bundle folder to write")
    p.add_argument("--compiler", metavar="PATH", help="the compiler executable (default: edgetpu_compiler on PATH)")
    p.add_argument("--require-edgetpu", action="store_true", help="exit 2 if no Edge TPU model can be made")
    p.add_argument("--labels", metavar="CSV", help="class map for a plain .tflite (default: one beside it)")
    p.add_argument("--json", action="store_true", help="print the manifest")
    p.set_defaults(func=cmd_compile)

    p = _sub(sub, "evaluate", "compare models with a reference over the same windows (and clip hit rates)",
             "Run every --model and the --reference through the same windows of the WAV files/folders given "
             "(the runtime's own framing and front end). Reports window top-1 agreement, whether the reference's "
             "top class is in the model's top-5, top-5 overlap, mean/max absolute score difference, and with "
             "--labels-csv (file,audioset_indices[,lenient_indices]) clip-level top-1/top-5 hit rates. With "
             "several --model, the first is also compared with each of the others (e.g. give the float rebuild "
             "first to see how far the int8 model is from it).",
             ["python -m tools evaluate --model out/yamnet-int8 --model ../shared/models/coral/yamnet_spectra_in"
              ".tflite --reference ../shared/models/yamnet_classification.tflite ../shared/audio ../shared/devset"
              "/clips --labels-csv ../shared/devset/labels.csv --held-out"])
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

    p = _sub(sub, "inspect", "inputs/outputs, quantization, operators, Edge TPU ops and size of a .tflite",
             "What a model holds, read from the file without an interpreter: the first thing to look at when a "
             "model does not load.",
             ["python -m tools inspect ../shared/models/coral/yamnet_spectra_in_edgetpu.tflite",
              "python -m tools inspect out/yamnet-int8 --json"])
    p.add_argument("model", metavar="MODEL|BUNDLE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = _sub(sub, "speed", "per-invoke CPU time of models side by side (invoked in turns)",
             "Load every model on the CPU and invoke them in turns for --seconds, so a shared machine slows them "
             "alike; print median/mean/p90 ms per invoke and the ratio to the last model.",
             ["python -m tools speed out/yamnet-int8 ../shared/models/coral/yamnet_spectra_in.tflite --seconds 10"])
    p.add_argument("model", nargs="+", metavar="MODEL|BUNDLE")
    p.add_argument("--seconds", type=float, default=10.0, help="total timing time (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="CPU interpreter threads (default: 1)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_speed)

    from .heads.train import add_parser as add_train_head_parser
    add_train_head_parser(sub)
    from .bench.daemon import add_parser as add_daemon_bench
    from .bench.onset import add_parser as add_onset
    from .bench.targets import add_parser as add_bench_targets
    add_daemon_bench(sub, _sub)
    add_onset(sub, _sub)
    add_bench_targets(sub, _sub)
    return parser


def main(argv=None) -> int:
    return run(build_parser(), argv, PROG)
