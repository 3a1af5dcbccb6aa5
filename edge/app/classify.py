"""`edge-audio classify`: WAV files window by window, as the daemon would hear them, with a per-file summary."""

from __future__ import annotations

import json

import numpy as np

from ..config import ModelConfig, MqttConfig
from ..core.clip import DEFAULT_POOL, pool_scores
from ..core.errors import EXIT_BAD_INPUT, InputError
from .args import in_bounds
from ..core.stream import hop_samples_for
from ..model.classifier import Classifier
from ..model.recordings import classify_file


def cmd_classify(args, say) -> int:
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
