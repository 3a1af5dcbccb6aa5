"""Shared by the peer scripts, which run inside the peers' own virtual environments: the standard library and
NumPy only, never the kit. Each peer script prints one JSON object with the same figures the kit reports for
its pipeline loop, measured the same way (wall time per window, process CPU time, ru_maxrss).

With --serve a peer stays up after its set-up and warm-up, prints one "ready" JSON line, then measures one round
per "run SECONDS" line on standard input (one JSON line each) until "quit" or the end of input: the side-by-side
bench runs every runner in alternating rounds this way (serve_rounds, also used by the kit's runner)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import wave

import numpy as np

WINDOW_SAMPLES = 15600  # YAMNet's 0.975 s at 16 kHz
RATE_HZ = 16000


class PeerError(Exception):
    """A problem to report in one line."""


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", required=True, help="the .tflite model with metadata")
    p.add_argument("--audio", required=True, help="16 kHz mono 16-bit WAV (looped)")
    p.add_argument("--seconds", type=float, default=5.0, help="wall time of the timed loop")
    p.add_argument("--hop", type=float, required=True, help="seconds between windows (the caller passes the kit's)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads, where the library takes it")
    p.add_argument("--serve", action="store_true", help="stay up and measure one round per 'run SECONDS' line")
    return p.parse_args()


def read_pcm(path: str) -> np.ndarray:
    try:
        with wave.open(path, "rb") as w:
            if w.getframerate() != RATE_HZ or w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise PeerError(f"{path}: peers get 16 kHz mono 16-bit audio (got {w.getframerate()} Hz, "
                                f"{w.getnchannels()} ch, {8 * w.getsampwidth()}-bit)")
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    except (OSError, wave.Error) as exc:
        raise PeerError(f"{path}: cannot read the WAV ({exc})") from None
    if pcm.size == 0:
        raise PeerError(f"{path}: no audio")
    reps = -(-(WINDOW_SAMPLES * 2) // pcm.size)
    return np.tile(pcm, reps + 1)  # long enough that every window start in [0, len) has a full window


class Windows:
    """Window i starts at i * hop on the looped audio: the same grid the kit's framer uses."""

    def __init__(self, pcm: np.ndarray, hop_seconds: float):
        self.pcm = pcm
        self.hop = int(round(hop_seconds * RATE_HZ))
        self.period = pcm.size - WINDOW_SAMPLES
        self.i = 0

    def next(self) -> np.ndarray:
        start = (self.i * self.hop) % self.period
        self.i += 1
        return self.pcm[start:start + WINDOW_SAMPLES].astype(np.float32) * np.float32(1 / 32768)


def measure(classify_window, windows: Windows, seconds: float, hop_seconds: float, warmup: int = 10) -> dict:
    """classify_window(float32 window) -> top label. Same figures as the kit's pipeline loop."""
    top = classify_window(windows.next())
    for _ in range(warmup):
        classify_window(windows.next())
    return {**timed_round(classify_window, windows, seconds, hop_seconds), "top_label": top}


def timed_round(classify_window, windows: Windows, seconds: float, hop_seconds: float) -> dict:
    """One timed loop of `seconds`: windows/s, ms per window, CPU per audio second, peak RSS so far."""
    clock = time.perf_counter
    times = []
    cpu0, t_start = time.process_time(), clock()
    deadline = t_start + seconds
    while clock() < deadline:
        t0 = clock()
        classify_window(windows.next())
        times.append(clock() - t0)
    wall = clock() - t_start
    cpu = time.process_time() - cpu0
    n = len(times)
    ms = np.asarray(times) * 1e3
    audio_s = n * hop_seconds
    return {"windows": n, "windows_per_s": n / wall, "ms_per_window": {
                "mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))},
            "cpu_ms_per_audio_s": cpu * 1e3 / audio_s, "cpu_ms_per_window": cpu * 1e3 / n,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def serve_rounds(run_round, ready: dict) -> None:
    """Print `ready` as one JSON line, then one JSON line per 'run SECONDS' line read from standard input."""
    print(json.dumps({"ready": True, **ready}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "run":
            break
        print(json.dumps(run_round(float(words[1]))), flush=True)


def main(setup, description: str) -> int:
    """setup(args) -> (classify_window, info dict). Prints the result as JSON; errors in one line, exit 2."""
    args = parse_args(description)
    try:
        pcm = read_pcm(args.audio)
        classify_window, info = setup(args)
        windows = Windows(pcm, args.hop)
        if args.serve:
            top = measure(classify_window, windows, 0.2, args.hop)["top_label"]  # warm-up
            serve_rounds(lambda seconds: timed_round(classify_window, windows, seconds, args.hop),
                         {**info, "top_label": top})
            return 0
        result = measure(classify_window, windows, args.seconds, args.hop)
    except PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the peer library's own failure: one line, the caller reports it
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        print(f"error: {exc.__class__.__name__}: {first}", file=sys.stderr)
        return 1
    print(json.dumps({**info, **result}))
    return 0
