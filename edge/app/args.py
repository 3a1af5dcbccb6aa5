"""Argument helpers the `edge-audio` commands share: the model options, the hop, and numbers checked against the
bounds of the config key they mirror (one place for the defaults and the bounds: edge/config.py)."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..config import ModelConfig, MqttConfig
from ..core.errors import InputError

MODEL = ModelConfig()  # the command line's defaults are the config file's
MQTT = MqttConfig()


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH|BUNDLE",
                   help="a .tflite model or a bundle folder (default: the installed bundle, see 'make model')")
    p.add_argument("--labels", metavar="CSV", help="class map (default: the bundle's, or one beside the model)")
    p.add_argument("--delegate", default=MODEL.delegate, metavar="POLICY",
                   help=f"auto | cpu | edgetpu[:usb[:N]|:pci[:N]] (default: {MODEL.delegate}, Edge TPU when "
                        "one is usable)")
    p.add_argument("--threads", type=int, default=MODEL.threads,
                   help=f"CPU interpreter threads (default: {MODEL.threads})")
    p.add_argument("--backend", metavar="LIST",
                   help="interpreter preference, comma separated (default: $EDGE_AUDIO_BACKENDS or "
                        "ai_edge_litert,tflite_runtime,tensorflow)")


def config_key(section, key: str) -> dict:
    """What edge/config.py says of a key of `section` (a config dataclass): its doc, lo, hi and choices."""
    return next(f.metadata for f in fields(section) if f.name == key)


def in_bounds(flag: str, value, section, key: str):
    """A command-line number checked against the bounds of the config key it mirrors (one place for both)."""
    meta = config_key(section, key)
    lo, hi = meta["lo"], meta["hi"]
    if not lo <= value <= hi:
        raise InputError(f"{flag} {value}: must be between {lo} and {hi}")
    return value


def add_hop_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hop", type=float, default=MODEL.hop_seconds, metavar="S",
                   help=f"seconds between windows (default: {MODEL.hop_seconds})")
