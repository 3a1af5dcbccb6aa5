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
from ..config import Config, clips_folder
from ..core.clipparams import SPEECH_CLASSES
from ..core.errors import ConfigError, EdgeAudioError, InputError
from ..model.classifier import Classifier
from ..sinks import make_sinks
from .daemon import Daemon, SystemdNotifier
from .threshold_sources import layers_for, state_labels_for

log = logging.getLogger("edge.startup")

STEPS = ("model", "thresholds", "audio", "sinks", "clips", "daemon")  # in order; selftest names its checks after them


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
    layers: dict = field(default_factory=dict)  # source id -> ThresholdLayers
    labels: dict = field(default_factory=dict)  # source id -> the watched labels with a state
    captures: list[Capture] = field(default_factory=list)
    opened: list = field(default_factory=list)  # (source id, line, warnings) per source the audio step tried
    sink: object = None
    daemon: Daemon | None = None

    def run_step(self, name: str) -> str:
        return getattr(self, f"_{name}")()

    def _model(self) -> str:
        self.classifier = load_classifier(self.cfg)
        d = self.classifier.decision
        return f"{d.model.name} on {d.delegate}: {d.reason}"

    def _thresholds(self) -> str:
        said = []
        for view in self.cfg.views():
            layers = layers_for(view, self.classifier, self.warn)
            named = view.calibration.file.strip()
            if named and named.lower() != "none" and not Path(named).is_file():
                self.warn(f"{view.where}calibration.file {view.calibration.file} is not there yet: running on the "
                          "other thresholds (edge-audio calibrate writes it)")
            labels = state_labels_for(view, self.classifier.labels, layers)  # once: the sinks and the loop
            self.layers[view.source_id], self.labels[view.source_id] = layers, labels
            where = f"calibration {layers.calibration_file}" if layers.calibration_file else "no calibration"
            watched = f"{len(labels)} watched label(s) with a state" if labels else "every label watched"
            said.append(f"{view.where}{watched}; {where}")
        return "; ".join(said)

    def _audio(self) -> str:
        said = []
        for view in self.cfg.views():
            warned: list[str] = []
            self.opened.append((view.source_id, "", warned))
            try:
                source = make_source(view.audio)
            except (InputError, ConfigError) as exc:  # a WAV that is no WAV, no ffmpeg for a stream, no ALSA module
                raise ConfigError(f"{view.path}: {view.where or 'audio: '}{exc}") from None
            self.captures.append(Capture(source, view.audio))
            if not self.checking:
                said.append(f"{view.where}{source.name}")
                continue
            line = check_source(view, source, warned.append)
            self.opened[-1] = (view.source_id, line, warned)
            for warning in warned:
                self.warn(warning)
            said.append(line)
        return "; ".join(said)

    def _sinks(self) -> str:
        self.sink = make_sinks(self.cfg, self.labels, self.classifier.model_name)
        return self.sink.check(self.warn) if self.checking else type(self.sink).__name__

    def _clips(self) -> str:
        """With [clips] on: the format they can be written in, and (selftest) whether their folder takes a file.
        Neither stops the daemon: without soundfile clips are WAV, without a folder they are off (said once)."""
        p = self.cfg.clips
        if not p.enabled:
            return "off"
        from ..sinks.clipwriter import clip_format
        fmt, why = clip_format(p.format)
        if why:
            self.warn(why)
        folder = clips_folder(p)
        if self.checking:
            problem = writable(folder)
            if problem:
                self.warn(f"clips folder {folder}: {problem}: the daemon will run without clips")
        if p.privacy != "off" and not set(SPEECH_CLASSES) & set(self.classifier.labels):
            self.warn(f"clips.privacy = {p.privacy!r}: this model has no speech class, so every clip is withheld "
                      "(privacy = \"off\" keeps them)")
        return f"{fmt} in {folder}, privacy {p.privacy}"

    def _daemon(self) -> str:
        notifier = SystemdNotifier() if self.checking else SystemdNotifier.from_environment()
        self.daemon = Daemon(self.cfg, self.classifier, self.captures, self.sink, thresholds=self.layers,
                             state_labels=self.labels, notifier=notifier)
        states = sum(len(s.state_labels) for s in self.daemon.sources)
        many = f" for {len(self.captures)} sources" if len(self.captures) > 1 else ""
        return f"detectors and window loops built{many} ({states} label state{'s' if states != 1 else ''})"


def check_source(cfg: Config, source, warn) -> str:
    """Open the source and close it again (`cfg`: the view of that source): a missing WAV file or ALSA device is
    an error (run would wait for it); a device held by the running service is a warning; stdin is not touched; a
    stream that does not answer now is a warning (a camera may be off; the daemon retries it)."""
    where = cfg.where
    if cfg.audio.source == "stdin":
        warn(f"{where}audio.source is 'stdin': the daemon reads raw PCM from its standard input; nothing to open")
        return f"{where}stdin (not opened)"
    try:
        source.open()
        rate = source.rate_hz
        if cfg.audio.source == "url":
            source.read()  # a stream opens lazily: its first audio says it answers
        source.close()
    except (EdgeAudioError, SourceLost) as exc:
        source.close()
        if "busy" in str(exc).lower():
            warn(f"{where}ALSA {cfg.audio.device}: busy (the running service holds it)")
            return f"{where}{source.name}: busy"
        if cfg.audio.source == "url":
            warn(f"{where}{exc}: not answering now (a camera may be off: the daemon retries it, its status offline "
                 "meanwhile)")
            return f"{where}{source.name}: not answering now"
        raise ConfigError(f"{cfg.path}: {where or 'audio: '}{exc}") from None
    return f"{where}{source.name} opens at {rate} Hz"


def writable(folder: Path) -> str:
    """'' when a file can be made in `folder` (made if need be), else why not (a running daemon's files are not
    touched)."""
    import tempfile
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".selftest-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def build(cfg: Config) -> Daemon:
    """Everything from the config (the daemon `run` starts), or ConfigError (exit 78) with one line."""
    parts = Startup(cfg)
    for step in STEPS:
        parts.run_step(step)
    return parts.daemon
