"""The daemon's start-up: one path for `edge-audio run` and `edge-audio selftest`.

run builds its daemon here, step by step; selftest runs the very same steps with `checking` on (sources opened
and closed again, the spool and Home Assistant payloads checked) and reports each. A start-up step is added to
STEPS, and nowhere else, so nothing can stop `run` that a release's selftest did not try first. Every step raises
ConfigError (exit 78, one line) for what would stop the daemon, and hands warnings to `warn`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..audio import make_source
from ..audio.capture import Capture, SourceLost
from ..config import Config
from ..core.errors import ConfigError, EdgeAudioError, InputError
from ..model.classifier import Classifier
from ..sinks import make_sinks
from .daemon import Daemon, SystemdNotifier
from .threshold_sources import layers_for, state_labels_for

log = logging.getLogger("edge.startup")

STEPS = ("model", "thresholds", "audio", "sinks", "daemon")  # in order; selftest names its checks after them


def load_classifier(cfg: Config) -> Classifier:
    """The config's model, or ConfigError (exit 78) with one line."""
    try:
        return Classifier.from_config(cfg.model)
    except InputError as exc:
        raise ConfigError(f"{cfg.path}: model: {exc}") from None


@dataclass
class Startup:
    """What the daemon is built from, made one step at a time. Each step returns the line selftest shows."""

    cfg: Config
    checking: bool = False  # selftest: open and close what run would open later; start nothing
    warn: Callable[[str], None] = log.warning
    classifier: Classifier | None = None
    layers: object = None
    labels: list[str] = field(default_factory=list)
    capture: Capture | None = None
    sink: object = None
    daemon: Daemon | None = None

    def run_step(self, name: str) -> str:
        return getattr(self, f"_{name}")()

    def _model(self) -> str:
        self.classifier = load_classifier(self.cfg)
        d = self.classifier.decision
        return f"{d.model.name} on {d.delegate}: {d.reason}"

    def _thresholds(self) -> str:
        cfg = self.cfg
        self.layers = layers_for(cfg, self.classifier, self.warn)
        named = cfg.calibration.file.strip()
        if named and named.lower() != "none" and not Path(named).is_file():
            self.warn(f"calibration.file {cfg.calibration.file} is not there yet: running on the other thresholds "
                      "(edge-audio calibrate writes it)")
        self.labels = state_labels_for(cfg, self.classifier.labels, self.layers)  # once: the sinks and the loop
        where = f"calibration {self.layers.calibration_file}" if self.layers.calibration_file else "no calibration"
        watched = f"{len(self.labels)} watched label(s) with a state" if self.labels else "every label watched"
        return f"{watched}; {where}"

    def _audio(self) -> str:
        cfg = self.cfg
        try:
            source = make_source(cfg.audio)
        except InputError as exc:
            raise ConfigError(f"{cfg.path}: audio: {exc}") from None
        self.capture = Capture(source, cfg.audio)
        if not self.checking:
            return source.name
        return check_source(cfg, source, self.warn)

    def _sinks(self) -> str:
        self.sink = make_sinks(self.cfg, self.labels, self.classifier.model_name)
        return self.sink.check(self.warn) if self.checking else type(self.sink).__name__

    def _daemon(self) -> str:
        notifier = SystemdNotifier() if self.checking else SystemdNotifier.from_environment()
        self.daemon = Daemon(self.cfg, self.classifier, self.capture, self.sink, thresholds=self.layers,
                             state_labels=self.labels, notifier=notifier)
        states = len(self.daemon.state_labels)
        return f"detector and window loop built ({states} label state{'s' if states != 1 else ''})"


def check_source(cfg: Config, source, warn) -> str:
    """Open the source and close it again: a missing WAV file or ALSA device is an error (run would wait for
    it); a device held by the running service is a warning; stdin is not touched."""
    if cfg.audio.source == "stdin":
        warn("audio.source is 'stdin': the daemon reads raw PCM from its standard input; nothing to open here")
        return "stdin (not opened)"
    try:
        source.open()
        rate = source.rate_hz
        source.close()
    except (EdgeAudioError, SourceLost) as exc:
        if "busy" in str(exc).lower():
            warn(f"ALSA {cfg.audio.device}: busy (the running service holds it)")
            return f"{source.name}: busy"
        raise ConfigError(f"{cfg.path}: audio: {exc}") from None
    return f"{source.name} opens at {rate} Hz"


def build(cfg: Config) -> Daemon:
    """Everything from the config (the daemon `run` starts), or ConfigError (exit 78) with one line."""
    parts = Startup(cfg)
    for step in STEPS:
        parts.run_step(step)
    return parts.daemon
