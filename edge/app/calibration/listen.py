"""Listening for calibration: the daemon itself (capture, window loop, front end, model, level gate, smoothing with
the configured [detector] parameters) with a counter for its sink and an observer that keeps each watched label's
smoothed score per window; its notifier is the default one, which does not talk to systemd (this is not the
service). What calibration measures is what the daemon would see."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ...audio.capture import Capture
from ...config import Config
from ...core.errors import InputError
from ...core.thresholds import ThresholdLayers
from ...core.wavfile import read_wav
from ...model.classifier import Classifier
from ...sinks.base import Sink
from ..daemon import Daemon

SILENT_DBFS = -90.0  # a window this quiet is no sound at all (a muted or disconnected input)
NO_AUDIO_SECONDS = 10.0  # live: no window for this long (or twice the stall time) is no audio


class StartCounter(Sink):
    """A sink that counts the detector's starts per label (the false starts, on background audio)."""

    def __init__(self):
        self.starts: dict[str, int] = {}

    def publish_event(self, event) -> None:
        if event.type == "start":
            self.starts[event.label] = self.starts.get(event.label, 0) + 1


@dataclass
class Segment:
    """One stretch of continuous audio (a WAV file, or a live listen): per watched label, its smoothed scores."""

    name: str
    scores: np.ndarray  # (windows, labels), float32
    levels: np.ndarray  # (windows,), dBFS
    gated: int
    starts: dict  # label -> starts at the thresholds in force


@dataclass
class Heard:
    labels: list[str]
    segments: list[Segment] = field(default_factory=list)
    stopped_early: str = ""

    @property
    def windows(self) -> int:
        return sum(len(s.levels) for s in self.segments)

    def series(self, label: str) -> list[np.ndarray]:
        k = self.labels.index(label)
        return [s.scores[:, k] for s in self.segments]

    def check_not_silent(self, where: str, gate_dbfs: float) -> None:
        """InputError (one line) for audio that holds nothing to calibrate on."""
        if not self.windows:
            raise InputError(f"{where}: no audio: not one window was heard")
        levels = np.concatenate([s.levels for s in self.segments])
        loudest = float(levels.max())
        if loudest <= SILENT_DBFS:
            raise InputError(f"{where}: the audio is silent ({self.windows} windows, the loudest {loudest:.0f} dBFS): "
                             "is the microphone muted, or the wrong device?")
        if sum(s.gated for s in self.segments) == self.windows:
            raise InputError(f"{where}: every window is below detector.min_level_dbfs ({gate_dbfs:g} dBFS; the "
                             f"loudest {loudest:.0f} dBFS): nothing was classified")


class Recorder:
    """The daemon's observer: copies the watched labels' smoothed scores after every window."""

    def __init__(self, index: np.ndarray, max_windows: int | None = None, progress=None):
        self.index = index
        self.at: np.ndarray | None = None
        self.rows: list[np.ndarray] = []
        self.levels: list[float] = []
        self.gated = 0
        self.max_windows = max_windows
        self.progress = progress
        self.last_window_at = time.monotonic()

    def __call__(self, daemon: Daemon, level: float, gated: bool) -> None:
        if self.at is None:  # the detector keeps only its watched classes: where the recorded labels sit in them
            self.at = daemon.detector.positions(self.index)
        self.rows.append(daemon.detector.smoothed[self.at])
        self.levels.append(level)
        self.gated += gated
        self.last_window_at = time.monotonic()
        if self.progress is not None:
            self.progress(len(self.rows), level)
        if self.max_windows is not None and len(self.rows) >= self.max_windows:
            daemon.request_stop()

    def segment(self, name: str, starts: dict) -> Segment:
        n = len(self.index)
        scores = np.array(self.rows, np.float32).reshape(-1, n)
        return Segment(name, scores, np.array(self.levels, np.float64), self.gated, dict(starts))


def label_index(classifier: Classifier, labels: list[str]) -> np.ndarray:
    return np.array([classifier.labels.index(l) for l in labels], np.intp)


def check_wavs(paths: list[str]) -> None:
    """Every file readable as audio before anything is listened to (one line for the first that is not)."""
    for path in paths:
        read_wav(path)


def hear_files(cfg: Config, classifier: Classifier, layers: ThresholdLayers, labels: list[str],
               paths: list[str], progress=None) -> Heard:
    """Each WAV file through the daemon path (as fast as it goes), one segment per file."""
    from ...audio.wav import WavSource
    heard = Heard(labels)
    index = label_index(classifier, labels)
    for k, path in enumerate(paths):
        audio = replace(cfg.audio, source="wav", file=str(path), realtime=False, loop=False)
        recorder = Recorder(index)
        counter = StartCounter()
        daemon = Daemon(replace(cfg, audio=audio), classifier, Capture(WavSource(audio), audio), counter,
                        thresholds=layers, observer=recorder)
        daemon.run()
        heard.segments.append(recorder.segment(str(path), counter.starts))
        if progress is not None:
            progress(k + 1, len(paths))
    return heard


def hear_live(cfg: Config, classifier: Classifier, layers: ThresholdLayers, labels: list[str], minutes: float,
              progress=None) -> Heard:
    """The configured source for `minutes` of audio. Ctrl-C ends the listen early (what was heard is used); no
    audio at all for NO_AUDIO_SECONDS is an InputError."""
    from ...audio import make_source
    hop_s = cfg.model.hop_seconds
    recorder = Recorder(label_index(classifier, labels), max(1, int(round(minutes * 60 / hop_s))), progress)
    counter = StartCounter()
    try:
        capture = Capture(make_source(cfg.audio), cfg.audio)
    except InputError as exc:
        raise InputError(f"{cfg.path}: audio: {exc}") from None
    daemon = Daemon(cfg, classifier, capture, counter, thresholds=layers, observer=recorder)
    heard = Heard(labels)
    silence = max(NO_AUDIO_SECONDS, 2 * cfg.audio.stall_seconds)
    done = threading.Event()

    def watchdog():
        while not done.wait(1.0):
            if time.monotonic() - recorder.last_window_at > silence:
                heard.stopped_early = f"no audio from {capture.source.name} for {silence:.0f} s"
                daemon.request_stop()
                return

    def interrupted(*_):
        heard.stopped_early = "interrupted"
        daemon.request_stop()

    previous = signal.signal(signal.SIGINT, interrupted) if threading.current_thread() is threading.main_thread() \
        else None
    guard = threading.Thread(target=watchdog, name="calibrate-watchdog", daemon=True)
    guard.start()
    try:
        status = daemon.run()
    finally:
        done.set()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if status != 0:
        raise InputError(f"listening stopped: {capture.failed or daemon.sink.failure() or 'see the log above'}")
    if heard.stopped_early.startswith("no audio") and not recorder.rows:
        raise InputError(f"{cfg.path}: {heard.stopped_early}: is the device capturing?")
    heard.segments.append(recorder.segment(capture.source.name, counter.starts))
    return heard
