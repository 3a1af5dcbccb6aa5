"""The `edge-audio` command line: a thin layer over the runtime. Errors the user can fix print one line."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..config import MqttConfig
from ..core.clip import CLIP_POOLS, DEFAULT_POOL
from ..core.errors import InputError
from .args import MQTT, PROG, add_hop_arg, add_model_args, in_bounds, say
from .command import OneLineParser, run

def cmd_classify(args) -> int:
    from .classify import cmd_classify as classify
    return classify(args, say)


def cmd_doctor(args) -> int:
    from .doctor import cmd_doctor as doctor
    return doctor(args)


# -- run / monitor ---------------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    import logging

    from ..config import describe, load_config
    from .daemon import build, install_signal_handlers

    if args.show_keys:
        print(describe())
        return 0
    if not args.config:
        raise InputError("--config FILE is required (start from a board profile: edge-audio profiles; or --show-keys)")
    if args.show_config:
        return show_config(args.config)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="edge-audio: %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    daemon = build(cfg)
    install_signal_handlers(daemon)
    return daemon.run()


def show_config(path: str) -> int:
    from ..config import load_config
    from ..core.errors import ConfigError
    from ..model.classifier import Classifier
    from .threshold_sources import show_config as describe_thresholds
    cfg = load_config(path)
    try:
        classifier = Classifier.from_config(cfg.model)
    except InputError as exc:
        raise ConfigError(f"{cfg.path}: model: {exc}") from None
    print(describe_thresholds(cfg, classifier))
    return 0


def cmd_calibrate(args) -> int:
    from .calibration.calibrate import cmd_calibrate as calibrate
    return calibrate(args, say)


def cmd_monitor(args) -> int:
    in_bounds("--port", args.port, MqttConfig, "port")
    if args.count < 0 or args.timeout < 0:
        raise InputError("--count and --timeout must not be negative")
    from .monitor import run_monitor
    return run_monitor(args)


# -- main ------------------------------------------------------------------------------------------------------
BUILT_IN = ("classify", "doctor", "run", "calibrate", "monitor", "profiles")  # subcommands defined here
ADDED_BY_MODULES = ("bench", "selftest", "fetch", "release")  # subcommands whose parsers live in their own modules


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command` (one of ADDED_BY_MODULES or not) the other modules' subcommands are
    left out, so running one command does not import the others (the daemon's memory)."""
    parser = OneLineParser(prog=PROG, description="Continuous audio event classification (YAMNet) on Coral Edge TPU "
                                            "and Raspberry Pi boards.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    p = sub.add_parser("classify", help="classify WAV files window by window",
                       description="Classify WAV files (any rate, any channels: resampled to 16 kHz mono).",
                       epilog="examples:\n  edge-audio classify recording.wav --top-k 3 --json\n"
                              "  edge-audio classify recording.wav --pool max --model out/my-sounds",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help="WAV files (PCM 8/16/24/32-bit or float)")
    add_model_args(p)
    add_hop_arg(p)
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes per window (default: 5)")
    p.add_argument("--json", action="store_true", help="JSON lines: one per window, one summary per file")
    p.add_argument("--pool", choices=CLIP_POOLS,
                   help=f"how a file's summary pools its windows: mean or max score per class (default: the "
                        f"bundle's measured choice, else {DEFAULT_POOL}; the summary says which)")
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
                       epilog="example: edge-audio profiles pi4-usb-coral > config.toml\n"
                              "         edge-audio run --config config.toml\n"
                              "         edge-audio run --show-keys   (every key, its default and meaning)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML configuration (see 'edge-audio profiles')")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--show-keys", action="store_true", help="print every configuration key and exit")
    p.add_argument("--show-config", action="store_true",
                   help="print each watched label's start threshold and where it comes from (user override, "
                        "calibration, bundle, profile default) and exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("calibrate", help="per-label thresholds from this site's background audio",
                       description="Listen to the site's background (the configured source, or WAV recordings) "
                                   "through the daemon's own path, fit the tail of each watched label's smoothed "
                                   "score and choose the lowest start threshold that keeps the expected false "
                                   "starts under the target. Writes a TOML file the daemon loads beside its config "
                                   "(default: calibration.toml in the state directory) and a plot per label.",
                       epilog="examples:\n"
                              "  edge-audio calibrate --config /etc/edge-audio/pi4-usb-coral.toml --minutes 60\n"
                              "  edge-audio calibrate --config site.toml --wav quiet-evening.wav quiet-morning.wav "
                              "--positives clips/\n"
                              "  (clips/<label>/*.wav: recordings of each watched sound, for the recall figures)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE", help="the daemon's TOML configuration")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--minutes", type=float, metavar="M", help="listen to the configured source for M minutes")
    src.add_argument("--wav", nargs="+", metavar="FILE", help="background recordings instead of listening")
    p.add_argument("--positives", metavar="DIR", help="DIR/<label>/*.wav: the watched sounds, for recall figures")
    p.add_argument("--label", action="append", metavar="NAME",
                   help="calibrate this label (repeatable; default: detector.allow)")
    p.add_argument("--false-starts-per-day", type=float, default=1.0, metavar="N",
                   help="target per label (default: 1)")
    p.add_argument("--out", metavar="FILE", help="where to write (default: calibration.file, else "
                                                 "calibration.toml in the state directory)")
    p.add_argument("--plots", metavar="DIR", help="folder for the PNGs (default: beside --out)")
    p.add_argument("--no-plots", action="store_true", help="draw no plots")
    p.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("monitor", help="print events and status from a broker",
                       description="Subscribe to a broker and print the events, status and state of one device or "
                                   "all of them.",
                       epilog="example: edge-audio monitor --host broker.lan --device kitchen")
    p.add_argument("--host", default=MQTT.host, help=f"broker host (default: {MQTT.host})")
    p.add_argument("--port", type=int, default=MQTT.port, help=f"broker port (default: {MQTT.port})")
    p.add_argument("--prefix", default=MQTT.prefix, help=f"topic prefix (default: {MQTT.prefix})")
    p.add_argument("--device", help="device id (default: all devices)")
    p.add_argument("--username")
    p.add_argument("--password-file", metavar="FILE", help="file holding the password (never on the command line)")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--ca-file", metavar="FILE", help="CA certificate to trust")
    p.add_argument("--cert-file", metavar="FILE", help="client certificate, for a broker that asks for one (with "
                   "--key-file; implies --tls)")
    p.add_argument("--key-file", metavar="FILE", help="the client certificate's private key")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default=MQTT.protocol,
                   help=f"MQTT protocol version (default: {MQTT.protocol})")
    p.add_argument("--metrics", action="store_true", help="also print metrics")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--count", type=int, default=0, help="exit after this many messages")
    p.add_argument("--timeout", type=float, default=0.0, help="exit after this many seconds")
    p.set_defaults(func=cmd_monitor)

    def wanted(name: str) -> bool:
        return command is None or command == name

    if wanted("bench"):
        from .bench import add_parser as add_bench_parser
        add_bench_parser(sub)
    if wanted("selftest"):
        from .selftest import add_parser as add_selftest_parser
        add_selftest_parser(sub)
    if wanted("fetch"):
        from .fetch import add_parser as add_fetch_parser
        add_fetch_parser(sub, PROG)
    if wanted("release"):
        from .release.parser import add_subcommands as add_release_parser
        add_release_parser(sub)

    p = sub.add_parser("profiles", help="list the board profiles shipped with the kit, or print one",
                       description="Board profiles are complete daemon configs for each supported board. Print one "
                                   "to start your own config from it.",
                       epilog="example: edge-audio profiles pi4-usb-coral > config.toml")
    p.add_argument("name", nargs="?", help="a profile to print (default: list them)")
    p.set_defaults(func=cmd_profiles)
    return parser


def cmd_profiles(args) -> int:
    from .. import firmware
    print(firmware.profile_text(args.name) if args.name else "\n".join(firmware.profile_names()), end="\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    first = next((a for a in args if not a.startswith("-")), None)
    return run(build_parser(first if first in BUILT_IN + ADDED_BY_MODULES else None), argv)


if __name__ == "__main__":
    sys.exit(main())
