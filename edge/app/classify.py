"""`edge-audio classify`: WAV files window by window, as the daemon would hear them, with a per-file summary."""

from __future__ import annotations

import json

import numpy as np

from ..config import ModelConfig, MqttConfig
from ..core.clip import CLIP_POOLS, DEFAULT_POOL, pool_scores
from ..core.errors import EXIT_BAD_INPUT, InputError
from ..core.stream import hop_samples_for
from ..model.classifier import Classifier
from ..model.recordings import classify_file
from .args import add_hop_arg, add_model_args, in_bounds
from .command import add_command, say


def add_parser(sub) -> None:
    p = add_command(sub, "classify", "classify WAV files window by window",
                    "Classify WAV files (any rate, any channels: resampled to 16 kHz mono).",
                    ["edge-audio classify recording.wav --top-k 3 --json",
                     "edge-audio classify recording.wav --pool max --model out/my-sounds"])
    p.add_argument("files", nargs="+", metavar="FILE", help="WAV files (PCM 8/16/24/32-bit or float)")
    add_model_args(p)
    add_hop_arg(p)
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes per window (default: 5)")
    p.add_argument("--json", action="store_true", help="JSON lines: one per window, one summary per file")
    p.add_argument("--pool", choices=CLIP_POOLS,
                   help=f"how a file's summary pools its windows: mean or max score per class (default: the "
                        f"bundle's measured choice, else {DEFAULT_POOL}; the summary says which)")
    p.set_defaults(func=cmd_classify)


def cmd_classify(args) -> int:
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
