"""The kit as a side-by-side runner (`python -m tools.bench.peers.kit_runner`, the kit's own environment): the same
protocol as the peers' --serve mode (peer_common.serve_rounds), so the bench can run everything in alternating
rounds. Each round is the kit's pipeline (source -> ring -> front end -> invoke -> scores -> detector with the
daemon's default settings) for SECONDS, then bare invokes for a third of that, so its end to end / bare invoke
ratio is paired too."""

from __future__ import annotations

import argparse
import sys
import time

from edge.core.stream import HOP_SECONDS
from tools.bench.peers.peer_common import serve_rounds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="a .tflite or a bundle")
    p.add_argument("--labels", help="class map (default: the bundle's or one beside the model)")
    p.add_argument("--delegate", default="auto", help="delegate policy (default: auto, the kit's default path)")
    p.add_argument("--audio", required=True)
    p.add_argument("--hop", type=float, default=HOP_SECONDS)
    args = p.parse_args(argv)

    import numpy as np

    from edge.bench.hook import detector_hook, load_audio
    from edge.bench.measure import Pipeline, bare_invokes, peak_rss_mb, stats_ms
    from edge.core.stream import hop_samples_for
    from edge.model.classifier import Classifier

    classifier = Classifier.open(args.model, args.labels, args.delegate, 1)
    audio = load_audio(args.audio)
    hop = hop_samples_for(args.hop)
    pipe = Pipeline(classifier, audio, hop, *detector_hook(classifier.labels, classifier.params))
    pipe.run_windows(20)  # warm-up: caches, the ring, the detector's history
    clock = time.perf_counter

    def run_round(seconds: float) -> dict:
        pipe.reset_times()
        windows_before = pipe.windows
        cpu0, t0 = time.process_time(), clock()
        deadline = t0 + seconds
        while clock() < deadline:
            pipe.step()
        wall, cpu = clock() - t0, time.process_time() - cpu0
        n = pipe.windows - windows_before
        ms = stats_ms([s * 1e3 for s in pipe.total_s])
        invokes = bare_invokes(classifier, seconds / 3)
        audio_s = n * hop / classifier.params.sample_rate_hz
        return {"windows": n, "windows_per_s": n / wall,
                "ms_per_window": {k: ms[k] for k in ("mean", "p50", "p99")},
                "invoke_p50_ms": float(np.median(invokes)) * 1e3,
                "cpu_ms_per_audio_s": cpu * 1e3 / audio_s, "peak_rss_mb": peak_rss_mb()}

    serve_rounds(run_round, {"peer": "edge-audio", "model": classifier.decision.model.name,
                             "input_kind": classifier.input_kind, "delegate": classifier.decision.delegate,
                             "decision": classifier.describe(), "threads": 1})
    return 0


if __name__ == "__main__":
    sys.exit(main())
