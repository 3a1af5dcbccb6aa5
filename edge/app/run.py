"""`edge-audio run`: the always-on daemon (capture -> events -> MQTT), or what its configuration holds. Its
imports stay light until the daemon starts: this is the process that runs for months."""

from __future__ import annotations

import signal
import sys

from ..core.errors import InputError
from .command import add_command


def add_parser(sub) -> None:
    p = add_command(sub, "run", "the always-on daemon: capture -> events -> MQTT",
                    "Capture audio continuously from every source of the config (ALSA devices, WAV replays, raw PCM "
                    "on stdin, network streams such as cameras' RTSP through ffmpeg), classify every hop of each on "
                    "one shared interpreter, turn scores into start/end events and publish them over MQTT. Stops "
                    "cleanly on SIGTERM/SIGINT. A configuration problem exits 78.",
                    ["edge-audio profiles pi4-usb-coral > config.toml",
                     "edge-audio run --config config.toml",
                     "edge-audio run --show-keys   (every key, its default and meaning)"])
    p.add_argument("--config", metavar="FILE", help="TOML configuration (see 'edge-audio profiles')")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--show-keys", action="store_true", help="print every configuration key and exit")
    p.add_argument("--show-config", action="store_true",
                   help="print each watched label's start threshold and where it comes from (user override, "
                        "calibration, bundle, profile default) and exit")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    import logging

    from ..config import describe, load_config
    from .daemon import install_signal_handlers
    from .startup import build

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
    status = daemon.run()
    # stopped: a stop asked for now is done already. Ignored, not left to Python's own handler, which the
    # interpreter's teardown puts back to the default (a SIGTERM there would end a clean exit as "killed")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    return status


def show_config(path: str) -> int:
    """Each watched label's start threshold and the layer it comes from."""
    from ..config import load_config
    from .startup import load_classifier
    from .threshold_sources import show_config as describe_thresholds
    cfg = load_config(path)
    classifier = load_classifier(cfg)
    print("\n\n".join(describe_thresholds(view, classifier) for view in cfg.views()))
    return 0
