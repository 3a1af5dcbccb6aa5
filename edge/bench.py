"""Per-window time through the real pipeline, split into front end, invoke and the rest.

The rest = framing (ring, int16 -> float32, resampling) + input write + score read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from .classifier import Classifier
from .framing import Framer


@dataclass
class StageTimes:
    frontend_ms: list = field(default_factory=list)
    invoke_ms: list = field(default_factory=list)
    rest_ms: list = field(default_factory=list)
    total_ms: list = field(default_factory=list)

    def summary(self) -> dict:
        out = {}
        for name in ("frontend_ms", "invoke_ms", "rest_ms", "total_ms"):
            v = np.asarray(getattr(self, name)) if getattr(self, name) else np.zeros(1)
            out[name] = {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
                         "p99": float(np.percentile(v, 99)), "min": float(v.min())}
        return out


def pipeline_split(classifier: Classifier, pcm: np.ndarray, rate_hz: int, hop_samples: int, seconds: float,
                   chunk_frames: int = 1024, warmup_windows: int = 5) -> tuple[StageTimes, int]:
    """Loop `pcm` (mono int16) through framer -> front end -> invoke -> scores for `seconds` of wall time."""
    p = classifier.params
    framer = Framer(p.window_samples, hop_samples, rate_hz, 1, p.sample_rate_hz, chunk_frames)
    times = StageTimes()
    clock = time.perf_counter
    deadline = clock() + seconds
    windows = 0
    pos = 0
    frontend = classifier.frontend
    while clock() < deadline:
        t0 = clock()
        chunk = pcm[pos:pos + chunk_frames]
        pos = pos + chunk_frames if pos + 2 * chunk_frames <= pcm.size else 0
        framer.push(chunk)
        framing = clock() - t0
        while (window := framer.next_window()) is not None:
            t1 = clock()
            features = frontend.compute(window, framer.window_start) if frontend is not None else window
            t2 = clock()
            classifier.write_input(features)
            t3 = clock()
            classifier.invoke()
            t4 = clock()
            classifier.read_scores()
            t5 = clock()
            windows += 1
            if windows <= warmup_windows:
                continue
            rest = framing + (t3 - t2) + (t5 - t4)
            framing = 0.0
            times.frontend_ms.append((t2 - t1) * 1e3)
            times.invoke_ms.append((t4 - t3) * 1e3)
            times.rest_ms.append(rest * 1e3)
            times.total_ms.append((t2 - t1 + t4 - t3 + rest) * 1e3)
    return times, windows


# -- the `edge-audio bench` command -------------------------------------------------------------------------------
def add_parser(sub) -> None:
    from .cli import add_model_args
    p = sub.add_parser("bench", help="per-window time: front end, invoke, the rest",
                       description="Run audio through the real pipeline and report per-window time split into "
                                   "front end, invoke and the rest (framing, input write, score read).",
                       epilog="example: edge-audio bench --model bundle/ --delegate cpu --seconds 5")
    add_model_args(p)
    p.add_argument("--audio", metavar="WAV", help="audio to loop (default: generated noise)")
    p.add_argument("--hop", type=float, default=0.48, metavar="S", help="seconds between windows (default: 0.48)")
    p.add_argument("--seconds", type=float, default=5.0, help="how long to run (default: 5)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from .cli import open_classifier
    from .pipeline import hop_samples_for
    from .wavio import read_wav

    classifier = open_classifier(args)
    if args.audio:
        audio = read_wav(args.audio)
        pcm, rate = np.ascontiguousarray(audio.samples.mean(axis=1).astype(np.int16)), audio.rate_hz
    else:  # pink-ish noise: the figures do not depend on content
        rng = np.random.default_rng(0)
        pcm, rate = (np.cumsum(rng.normal(0, 300, 16000 * 10)) % 8000 - 4000).astype(np.int16), 16000
    times, windows = pipeline_split(classifier, pcm, rate, hop_samples_for(args.hop), args.seconds)
    s = times.summary()
    result = {"model": classifier.decision.model.name, "delegate": classifier.decision.delegate,
              "threads": classifier.threads, "backend": str(classifier.backend), "windows": windows, **s}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']} on {result['delegate']} ({result['backend']}, {result['threads']} thread(s)), "
              f"{windows} windows, ms per window:")
        print(f"  {'':10s} {'mean':>8s} {'p50':>8s} {'p99':>8s}")
        for name in ("frontend_ms", "invoke_ms", "rest_ms", "total_ms"):
            v = s[name]
            print(f"  {name[:-3]:10s} {v['mean']:8.3f} {v['p50']:8.3f} {v['p99']:8.3f}")
    return 0
