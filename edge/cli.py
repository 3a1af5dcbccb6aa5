"""The `edge-audio` command line: a thin layer over the runtime. Errors the user can fix print one line."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .errors import EXIT_BAD_INPUT, EXIT_UNEXPECTED, EdgeAudioError, InputError

PROG = "edge-audio"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the usage block first)
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH|BUNDLE",
                   help="a .tflite model or a bundle folder (default: the installed bundle, see 'make model')")
    p.add_argument("--labels", metavar="CSV", help="class map (default: the bundle's, or one beside the model)")
    p.add_argument("--delegate", default="auto", metavar="POLICY",
                   help="auto | cpu | edgetpu[:usb[:N]|:pci[:N]] (default: auto, Edge TPU when one is usable)")
    p.add_argument("--threads", type=int, default=1, help="CPU interpreter threads (default: 1)")
    p.add_argument("--backend", metavar="LIST",
                   help="interpreter preference, comma separated (default: $EDGE_AUDIO_BACKENDS or "
                        "ai_edge_litert,tflite_runtime,tensorflow)")


def open_classifier(args):
    from .classifier import Classifier
    classifier = Classifier.open(args.model, args.labels, args.delegate, args.threads, args.backend)
    _say(classifier.describe())
    return classifier


# -- classify --------------------------------------------------------------------------------------------------
def cmd_classify(args) -> int:
    from .pipeline import classify_file, hop_samples_for

    hop_samples_for(args.hop)
    if args.top_k < 1:
        raise InputError("--top-k must be at least 1")
    classifier = open_classifier(args)
    status = 0
    for name in args.files:
        try:
            windows = list(_classify_one(name, classifier, args, classify_file))
        except InputError as exc:  # report it, go on with the other files
            _say(f"error: {exc}")
            status = EXIT_BAD_INPUT
            continue
        mean = np.mean(windows, axis=0) if windows else np.zeros_like(classifier.scores)
        top = classifier.top(mean, args.top_k)
        if args.json:
            print(json.dumps({"file": name, "summary": True, "windows": len(windows), "top": top}), flush=True)
        else:
            print(f"{'summary':>17}  " + _row(top) + f"   ({len(windows)} windows)\n", flush=True)
    return status


def _classify_one(name, classifier, args, classify_file):
    if not args.json:
        print(f"{name}")
    for w in classify_file(name, classifier, args.hop):
        top = classifier.top(w.scores, args.top_k)
        if args.json:
            print(json.dumps({"file": name, "t_start": round(w.t_start, 3), "t_end": round(w.t_end, 3),
                              "top": top}))
        else:
            print(f"{w.t_start:7.3f}-{w.t_end:7.3f}s  " + _row(top))
        yield w.scores.copy()


def _row(top: list[dict]) -> str:
    return "  ".join(f"{t['label'][:28]} {t['score']:.2f}" for t in top)


# -- doctor ----------------------------------------------------------------------------------------------------
def cmd_doctor(args) -> int:
    from . import alsa, edgetpu
    from .bench_env import board_model
    from .bundle import load_bundle
    from .classifier import default_bundle_path
    from .runtime import available_backends, load_backend

    report: dict = {"edge_audio": __version__, "python": platform.python_version(),
                    "machine": f"{platform.system()} {platform.machine()}", "board": board_model() or ""}
    backends = available_backends()
    report["backends"] = dict(backends)
    try:
        report["backend_in_use"] = str(load_backend(args.backend))
    except EdgeAudioError as exc:
        report["backend_in_use"] = None
        report["backend_problem"] = str(exc)
    lib = edgetpu.find_library()
    report["edgetpu_library"] = lib or f"{edgetpu.library_name()} not found"
    report["pycoral"] = "importable" if edgetpu._pycoral() is not None else "not installed"
    report["edge_tpus"] = [f"{t.type} {t.path} {t.detail}".strip() for t in edgetpu.list_edge_tpus()]
    devices, note = alsa.capture_devices()
    report["alsa_capture"] = devices
    report["alsa_note"] = note
    report["sound_cards"] = alsa.sound_cards()
    bundle_path = Path(args.model) if args.model else default_bundle_path()
    try:
        b = load_bundle(bundle_path)
        report["model_bundle"] = {"path": str(bundle_path), "status": "ok (sha256 verified)", "name": b.name,
                                  "edgetpu_model": b.edgetpu_model.name if b.edgetpu_model else None,
                                  "cpu_model": b.cpu_model.name}
    except EdgeAudioError as exc:
        report["model_bundle"] = {"path": str(bundle_path), "status": f"problem: {exc}"}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"edge-audio {report['edge_audio']}, Python {report['python']}, {report['machine']}"
          + (f", {report['board']}" if report["board"] else ""))
    for name, version in backends:
        print(f"  backend {name:15s} {version}")
    print(f"  in use          {report['backend_in_use'] or report.get('backend_problem')}")
    print(f"  libedgetpu      {report['edgetpu_library']}"
          + ("" if lib else f"\n                  -> {edgetpu.INSTALL_HINT}"))
    print(f"  pycoral         {report['pycoral']} (optional; never 'pip install pycoral': that name is another project)")
    tpus = report["edge_tpus"]
    print(f"  Edge TPUs       {', '.join(tpus) if tpus else 'none found (USB 1a6e:089a / 18d1:9302, /dev/apex_*)'}")
    print(f"  ALSA capture    {', '.join(devices) if devices else 'none'}" + (f" ({note})" if note else ""))
    print(f"  sound cards     {'; '.join(report['sound_cards']) or 'none in /proc/asound/cards'}")
    mb = report["model_bundle"]
    print(f"  model bundle    {mb['path']}: {mb['status']}")
    return 0


# -- run / monitor ---------------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    import logging

    from .config import describe, load_config
    from .daemon import build, install_signal_handlers

    if args.show_keys:
        print(describe())
        return 0
    if not args.config:
        raise InputError("--config FILE is required (see firmware_configs/*.toml, or --show-keys)")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="edge-audio: %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    daemon = build(cfg)
    install_signal_handlers(daemon)
    return daemon.run()


def cmd_monitor(args) -> int:
    from .monitor import run_monitor
    return run_monitor(args)


# -- main ------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Continuous audio event classification (YAMNet) on Coral Edge TPU "
                                            "and Raspberry Pi boards.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    p = sub.add_parser("classify", help="classify WAV files window by window",
                       description="Classify WAV files (any rate, any channels: resampled to 16 kHz mono).",
                       epilog="example: edge-audio classify recording.wav --top-k 3 --json")
    p.add_argument("files", nargs="+", metavar="FILE", help="WAV files (PCM 8/16/24/32-bit or float)")
    add_model_args(p)
    p.add_argument("--hop", type=float, default=0.48, metavar="S", help="seconds between windows (default: 0.48)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes per window (default: 5)")
    p.add_argument("--json", action="store_true", help="JSON lines: one per window, one summary per file")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("doctor", help="what this machine has: runtime, Edge TPU, ALSA, model bundle",
                       description="Report the interpreter backend, the Edge TPU library and devices, ALSA capture "
                                   "devices and the model bundle: the first thing to run when the Coral is not "
                                   "detected.", epilog="example: edge-audio doctor --json")
    p.add_argument("--model", metavar="BUNDLE", help="bundle to check (default: the installed one)")
    p.add_argument("--backend", metavar="LIST", help="interpreter preference, comma separated")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("run", help="the always-on daemon: capture -> events -> MQTT",
                       description="Capture audio continuously (ALSA, a WAV replay or raw PCM on stdin), classify "
                                   "every hop, turn scores into start/end events and publish them over MQTT. "
                                   "Stops cleanly on SIGTERM/SIGINT. A configuration problem exits 78.",
                       epilog="example: edge-audio run --config firmware_configs/pi4-usb-coral.toml\n"
                              "         edge-audio run --show-keys   (every key, its default and meaning)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML configuration (a board profile from firmware_configs/)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--show-keys", action="store_true", help="print every configuration key and exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("monitor", help="print events and status from a broker",
                       description="Subscribe to a broker and print the events, status and state of one device or "
                                   "all of them.",
                       epilog="example: edge-audio monitor --host broker.lan --device kitchen")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--prefix", default="edge-audio", help="topic prefix (default: edge-audio)")
    p.add_argument("--device", help="device id (default: all devices)")
    p.add_argument("--username")
    p.add_argument("--password-file", metavar="FILE", help="file holding the password (never on the command line)")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--ca-file", metavar="FILE", help="CA certificate to trust")
    p.add_argument("--metrics", action="store_true", help="also print metrics")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--count", type=int, default=0, help="exit after this many messages")
    p.add_argument("--timeout", type=float, default=0.0, help="exit after this many seconds")
    p.set_defaults(func=cmd_monitor)

    from .bench import add_parser as add_bench_parser
    add_bench_parser(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None, prog: str = PROG) -> int:
    """Parse, dispatch to args.func, and turn the project's errors into one line and an exit status."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except EdgeAudioError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edge-audio classify ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        import traceback
        traceback.print_exc()
        print(f"{prog}: unexpected error (a bug: please report it with the traceback above)", file=sys.stderr)
        return EXIT_UNEXPECTED


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
