"""A whole recording classified window by window, as the daemon would hear it: the window loop over a WAV file
and the classifier. Used by `edge-audio classify`, selftest and the host tools' evaluation and head training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..core.stream import HOP_SECONDS, WindowLoop, hop_samples_for, recording_windows
from ..core.wavfile import WavAudio, read_wav
from .classifier import Classifier


@dataclass
class Window:
    t_start: float
    t_end: float
    scores: np.ndarray  # the classifier's preallocated array: copy it to keep it


def classify_audio(audio: WavAudio, classifier: Classifier, hop_seconds: float = HOP_SECONDS) -> Iterator[Window]:
    """Every window of a recording, padded at the end the way YAMNet's reference pads."""
    p = classifier.params
    loop = WindowLoop(p.window_samples, hop_samples_for(hop_seconds, p.sample_rate_hz), audio.rate_hz,
                      audio.channels, p.sample_rate_hz, grid_samples=classifier.grid_samples)
    for window, start in recording_windows(audio.samples, loop):
        scores = classifier.classify(window, start)
        yield Window(start / p.sample_rate_hz, (start + p.window_samples) / p.sample_rate_hz, scores)


def classify_file(path: str | Path, classifier: Classifier, hop_seconds: float = HOP_SECONDS) -> Iterator[Window]:
    return classify_audio(read_wav(path), classifier, hop_seconds)
