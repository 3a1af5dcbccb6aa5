"""`edge-audio classify`: WAV files window by window, as the daemon would hear them, with a per-file summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import ModelConfig, MqttConfig
from ..core.clip import DEFAULT_POOL, pool_scores
from ..core.errors import EXIT_BAD_INPUT, InputError
from ..core.stream import HOP_SECONDS, WindowLoop, hop_samples_for, recording_windows
from ..core.wavfile import WavAudio, read_wav
from ..model.classifier import Classifier


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


def cmd_classify(args, say) -> int:
    from .cli import in_bounds
    hop_samples_for(args.hop)
    in_bounds("--threads", args.threads, ModelConfig, "threads")
    in_bounds("--top-k", args.top_k, MqttConfig, "scores_top_k")
    classifier = Classifier.open(args.model, args.labels, args.delegate, args.threads, args.backend)
    say(classifier.describe())
    pool = args.pool or classifier.clip_pool or DEFAULT_POOL  # a trained bundle records the one it measured best
    why = "; the bundle's choice" if not args.pool and classifier.clip_pool else ""
    status = 0
    for name in args.files:
        try:
            windows = list(_classify_one(name, classifier, args))
        except InputError as exc:  # report it, go on with the other files
            say(f"error: {exc}")
            status = EXIT_BAD_INPUT
            continue
        clip = pool_scores(windows, pool) if windows else np.zeros_like(classifier.scores)
        top = classifier.top(clip, args.top_k)
        if args.json:
            print(json.dumps({"file": name, "summary": True, "pool": pool, "windows": len(windows),
                              "top": top}), flush=True)
        else:
            print(f"{pool + ' summary':>17}  " + _row(top) + f"   ({pool} of {len(windows)} windows{why})\n",
                  flush=True)
    return status


def _classify_one(name, classifier, args):
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
