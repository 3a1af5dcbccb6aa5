"""Source -> framer -> classifier, for files (and, through the same Framer, for live streams)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .classifier import Classifier
from .errors import InputError
from .framing import Framer
from .wavio import WavAudio, read_wav

DEFAULT_HOP_SECONDS = 0.48
CHUNK_FRAMES = 4096


@dataclass
class Window:
    t_start: float
    t_end: float
    scores: np.ndarray  # the classifier's preallocated array: copy it to keep it


def hop_samples_for(hop_seconds: float, rate_hz: int = 16000) -> int:
    if not 0.01 <= hop_seconds <= 10.0:
        raise InputError(f"hop {hop_seconds} s is out of range (0.01 to 10 s)")
    return int(round(hop_seconds * rate_hz))


def classify_audio(audio: WavAudio, classifier: Classifier, hop_seconds: float = DEFAULT_HOP_SECONDS
                   ) -> Iterator[Window]:
    """Every window of a recording, padded at the end the way YAMNet's reference pads."""
    p = classifier.params
    framer = Framer(p.window_samples, hop_samples_for(hop_seconds, p.sample_rate_hz), audio.rate_hz,
                    audio.channels, p.sample_rate_hz, CHUNK_FRAMES)
    pcm = np.ascontiguousarray(audio.samples).reshape(-1)
    step = CHUNK_FRAMES * audio.channels

    def drain() -> Iterator[Window]:
        while (window := framer.next_window()) is not None:
            start = framer.window_start
            scores = classifier.classify(window, start)
            yield Window(start / p.sample_rate_hz, (start + p.window_samples) / p.sample_rate_hz, scores)

    for i in range(0, pcm.size, step):
        framer.push(pcm[i:i + step])
        yield from drain()
    framer.finish()
    yield from drain()
    framer.pad_to_complete()
    yield from drain()


def classify_file(path: str | Path, classifier: Classifier, hop_seconds: float = DEFAULT_HOP_SECONDS
                  ) -> Iterator[Window]:
    return classify_audio(read_wav(path), classifier, hop_seconds)
