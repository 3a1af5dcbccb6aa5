"""Measuring one classifier configuration (model x delegate x threads) the way the device runs it.

    init          model load + delegate (Classifier.open)
    first invoke  the first interpreter call (lazy allocations, Edge TPU parameter upload)
    warm-up       a few more invokes, not counted
    invoke        bare interpreter calls on a fixed input, for a bounded wall time
    pipeline      source -> ring -> framer -> front end -> invoke -> scores -> on_window callback, per window,
                  through the kit's one window loop (edge/core/stream.py)
    real time     the same pipeline paced at the audio's own rate: process CPU % of one core
    allocation    tracemalloc over a number of pipeline windows (not timed)

Nothing here prints: progress goes through the `progress` callable.
"""

from __future__ import annotations

import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..core.stream import CHUNK_FRAMES, WindowLoop
WARMUP_INVOKES = 10
ROUNDS = 5  # bare invoke and pipeline alternate this many times
PROGRESS_EVERY_S = 10.0  # a progress line this often inside long loops
# the per-window hook: scores (the classifier's preallocated array) and the window's first sample index
WindowCallback = Callable[[np.ndarray, int, bool], None]  # scores, start sample, an onset window?
Progress = Callable[[str], None]


def stats_ms(values_ms) -> dict:
    """mean/std/min/p50/p90/p99/max of a list of milliseconds (n = how many)."""
    v = np.asarray(values_ms, np.float64)
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(v.max())}


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


@dataclass
class Audio:
    """Interleaved int16 PCM to loop through the pipeline."""

    pcm: np.ndarray  # (frames * channels,) int16
    rate_hz: int
    channels: int
    name: str

    @property
    def frames(self) -> int:
        return self.pcm.size // self.channels


class LoopedSource:
    """Hands out CHUNK_FRAMES-frame chunks of the audio forever, wrapping at the end (no allocation)."""

    def __init__(self, audio: Audio, chunk_frames: int = CHUNK_FRAMES):
        if audio.frames < chunk_frames:
            reps = -(-chunk_frames // audio.frames) + 1
            audio = Audio(np.tile(audio.pcm, reps), audio.rate_hz, audio.channels, audio.name)
        self.audio = audio
        self.step = chunk_frames * audio.channels
        self.pos = 0

    def read(self) -> np.ndarray:
        pcm = self.audio.pcm
        if self.pos + self.step > pcm.size:
            self.pos = 0
        chunk = pcm[self.pos:self.pos + self.step]
        self.pos += self.step
        return chunk


class Pipeline:
    """The device's per-window path, with each stage timed.

    `step()` reads one chunk from the source, pushes it through the ring and returns after classifying every
    window that chunk completed. `on_window(scores, start_sample, extra)` is called once per window after the
    scores are read: that is where the detector plugs in. With `onset_lead_samples` (the detector's, from
    edge.bench.hook.detector_hook) the loop adds the daemon's onset windows too (extra True), as the daemon does.
    `windows` counts the hop grid's windows (each one a hop of audio), `onset_windows` the extra ones.
    """

    def __init__(self, classifier, audio: Audio, hop_samples: int, on_window: Optional[WindowCallback] = None,
                 onset_lead_samples: int = 0):
        p = classifier.params
        self.classifier = classifier
        self.source = LoopedSource(audio)
        self.loop = WindowLoop(p.window_samples, hop_samples, audio.rate_hz, audio.channels, p.sample_rate_hz,
                               grid_samples=classifier.grid_samples,
                               onset_lead_samples=onset_lead_samples)
        self.hop_samples = hop_samples
        self.on_window = on_window
        self.windows = 0
        self.onset_windows = 0
        self._pending_framing = 0.0
        self.reset_times()

    def reset_times(self) -> None:
        self.framing_s: list = []  # per window: source + ring + window read since the previous window
        self.frontend_s: list = []
        self.invoke_s: list = []
        self.io_s: list = []  # input write + score read
        self.callback_s: list = []
        self.total_s: list = []

    def first_window(self) -> None:
        """Read until a window is complete and write it into the input tensor (for the first invoke)."""
        prepared = False
        while not prepared:
            for window, start in self.loop.feed(self.source.read()):
                if not prepared:
                    self.classifier.prepare(window, start)
                    prepared = True

    def step(self, record: bool = True) -> int:
        clock = time.perf_counter
        c = self.classifier
        frontend = c.frontend
        done = 0
        t0 = clock()
        for window, start in self.loop.feed(self.source.read()):
            t1 = clock()
            features = frontend.compute(window, start) if frontend is not None else window
            t2 = clock()
            c.write_input(features)
            t3 = clock()
            c.invoke()
            t4 = clock()
            scores = c.read_scores()
            t5 = clock()
            if self.on_window is not None:
                self.on_window(scores, start, self.loop.extra)
            t6 = clock()
            framing = self._pending_framing + (t1 - t0)
            self._pending_framing = 0.0
            if self.loop.extra:
                self.onset_windows += 1
            else:
                self.windows += 1
            done += 1
            if record:
                self.framing_s.append(framing)
                self.frontend_s.append(t2 - t1)
                self.invoke_s.append(t4 - t3)
                self.io_s.append((t3 - t2) + (t5 - t4))
                self.callback_s.append(t6 - t5)
                self.total_s.append(framing + (t6 - t1))
            t0 = clock()
        self._pending_framing += clock() - t0
        return done

    def run_windows(self, count: int, record: bool = False) -> None:
        target = self.windows + count
        while self.windows < target:
            self.step(record)


def _ms(seconds_list) -> list:
    return [s * 1e3 for s in seconds_list]


def measure(open_classifier: Callable[[], object], audio: Audio, hop_samples: int, seconds: float,
            realtime_seconds: float, on_window: Optional[WindowCallback] = None,
            progress: Optional[Progress] = None, alloc_windows: int = 100, rounds: int = ROUNDS,
            onset_lead_samples: int = 0) -> dict:
    """All the figures for one configuration. `open_classifier()` builds the classifier (timed as init).

    Bare invoke and the pipeline run in alternating rounds, so a machine that gets busier or quieter meanwhile
    slows both alike; the overhead figures are the ratios of each round's p50s (median and range)."""
    say = progress or (lambda message: None)
    classifier, pipe, startup = open_and_warm(open_classifier, audio, hop_samples, on_window, onset_lead_samples)
    say(f"{rounds} rounds of bare invoke and pipeline, {seconds:g} s of each in all (source -> ring -> front end "
        "-> invoke -> scores" + (" -> callback" if on_window else "") + ")")
    timed = run_rounds(classifier, pipe, seconds, rounds, say)
    say(f"paced at real time for {realtime_seconds:g} s")
    realtime = run_realtime(pipe, audio.rate_hz, realtime_seconds, say)
    say(f"allocation over {alloc_windows} windows")
    alloc = measure_allocation(pipe, alloc_windows)
    return figures(classifier, pipe, startup, timed, hop_samples, on_window is not None) | {
        "realtime": realtime, "alloc": alloc, "peak_rss_mb": peak_rss_mb(),
        "_samples": {"invoke": _ms(timed.invoke), "end to end": _ms(pipe.total_s)},  # for the plot; not in the JSON
    }


@dataclass
class Startup:
    """Opening the classifier and its first invokes (before anything is counted)."""

    init_ms: float  # model load + delegate
    first_invoke_ms: float
    warm_s: list  # each warm-up invoke


def open_and_warm(open_classifier: Callable[[], object], audio: Audio, hop_samples: int,
                  on_window: Optional[WindowCallback], onset_lead_samples: int):
    """(classifier, pipeline, Startup): the classifier opened (timed), the pipeline's first window set as its
    input, the first invoke on its own, then WARMUP_INVOKES more."""
    clock = time.perf_counter
    t0 = clock()
    classifier = open_classifier()
    init_ms = (clock() - t0) * 1e3
    pipe = Pipeline(classifier, audio, hop_samples, on_window, onset_lead_samples)
    pipe.first_window()  # then the first invoke on its own
    t0 = clock()
    classifier.invoke()
    first_invoke_ms = (clock() - t0) * 1e3
    warm = []
    for _ in range(WARMUP_INVOKES):
        t0 = clock()
        classifier.invoke()
        warm.append(clock() - t0)
    return classifier, pipe, Startup(init_ms, first_invoke_ms, warm)


@dataclass
class Rounds:
    """What the alternating rounds of bare invoke and pipeline measured."""

    rounds: int
    invoke: list  # seconds of each bare invoke
    paired: list  # per round: (bare invoke p50, end to end p50, front end p50 or None)
    windows: int  # the grid's: each one a hop of audio
    onset_windows: int  # classified too, where a sound began
    cpu_s: float  # process CPU time in the pipeline's turns
    wall_s: float  # wall time in the pipeline's turns


def run_rounds(classifier, pipe: Pipeline, seconds: float, rounds: int, say: Progress) -> Rounds:
    """`rounds` turns of bare invokes then the pipeline, `seconds` / `rounds` of each per turn."""
    clock = time.perf_counter
    pipe.run_windows(5)  # front-end caches, ring filled
    pipe.reset_times()
    invoke: list = []
    paired: list = []
    windows_before, onset_before = pipe.windows, pipe.onset_windows
    cpu, wall = 0.0, 0.0
    t_begin = clock()
    next_note = t_begin + PROGRESS_EVERY_S
    for r in range(rounds):
        round_invoke = bare_invokes(classifier, seconds / rounds)
        invoke += round_invoke
        first = len(pipe.total_s)
        cpu0, t0 = time.process_time(), clock()
        deadline = t0 + seconds / rounds
        while clock() < deadline:
            pipe.step()
        wall += clock() - t0
        cpu += time.process_time() - cpu0
        fe = pipe.frontend_s[first:] if classifier.frontend is not None else []
        if round_invoke and pipe.total_s[first:]:
            paired.append((float(np.median(round_invoke)), float(np.median(pipe.total_s[first:])),
                           float(np.median(fe)) if fe else None))
        if clock() >= next_note:
            say(f"round {r + 1}/{rounds}: {pipe.windows - windows_before} windows, {clock() - t_begin:.0f} s")
            next_note += PROGRESS_EVERY_S
    return Rounds(rounds, invoke, paired, pipe.windows - windows_before, pipe.onset_windows - onset_before, cpu, wall)


def figures(classifier, pipe: Pipeline, startup: Startup, timed: Rounds, hop_samples: int, callback: bool) -> dict:
    """The report's figures for the classifier, its start and the timed rounds."""
    windows, cpu, wall = timed.windows, timed.cpu_s, timed.wall_s
    audio_s = windows * hop_samples / classifier.params.sample_rate_hz
    return {
        "status": "ok",
        "model": classifier.decision.model.name,
        "model_path": str(classifier.decision.model),
        "input_kind": classifier.input_kind,
        "delegate": classifier.decision.delegate,
        "decision": classifier.decision.reason,
        "threads": classifier.threads,
        "backend": {"name": classifier.backend.name, "version": classifier.backend.version},
        "init_ms": startup.init_ms,
        "first_invoke_ms": startup.first_invoke_ms,
        "warmup": {"invokes": len(startup.warm_s), "mean_ms": float(np.mean(startup.warm_s)) * 1e3},
        "invoke_ms": stats_ms(_ms(timed.invoke)),
        "frontend_ms": stats_ms(_ms(pipe.frontend_s)) if classifier.frontend is not None else None,
        "framing_ms": stats_ms(_ms(pipe.framing_s)),
        "io_ms": stats_ms(_ms(pipe.io_s)),
        "callback_ms": stats_ms(_ms(pipe.callback_s)) if callback else None,
        "e2e_ms": stats_ms(_ms(pipe.total_s)),
        "rounds": timed.rounds,
        "e2e_over_invoke": ratio_stats([(e, i) for i, e, _ in timed.paired]),
        "frontend_over_invoke": ratio_stats([(f, i) for i, _, f in timed.paired if f is not None]),
        "windows": windows,
        "onset_windows": timed.onset_windows,
        "windows_per_s": windows / wall if wall > 0 else 0.0,
        "audio_seconds": audio_s,
        "rtf": wall / audio_s if audio_s else None,
        "cpu_ms_per_window": cpu * 1e3 / windows if windows else None,
        "cpu_ms_per_audio_s": cpu * 1e3 / audio_s if audio_s else None,
    }


def bare_invokes(classifier, seconds: float) -> list:
    """Seconds of each invoke on the input already set, for `seconds` (nothing else timed)."""
    clock = time.perf_counter
    out = []
    deadline = clock() + seconds
    while clock() < deadline:
        t0 = clock()
        classifier.invoke()
        out.append(clock() - t0)
    return out


def ratio_stats(pairs: list) -> dict | None:
    """Median and range of a/b over paired rounds (None without pairs)."""
    ratios = [a / b for a, b in pairs if b]
    if not ratios:
        return None
    return {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios), "rounds": len(ratios)}


def run_realtime(pipe: Pipeline, rate_hz: int, seconds: float, progress: Optional[Progress] = None) -> dict:
    """Feed chunks no faster than the audio's own rate; CPU % of one core = process CPU time / wall time."""
    chunk_s = CHUNK_FRAMES / rate_hz
    clock = time.perf_counter
    windows_before = pipe.windows
    cpu0, t_start = time.process_time(), clock()
    due = t_start
    late = 0
    next_note = t_start + PROGRESS_EVERY_S
    while True:
        now = clock()
        if now - t_start >= seconds:
            break
        if progress is not None and now >= next_note:
            progress(f"real time: {pipe.windows - windows_before} windows, {now - t_start:.0f}/{seconds:g} s")
            next_note += PROGRESS_EVERY_S
        if due > now:
            time.sleep(due - now)
        elif now - due > chunk_s:
            late += 1  # fell behind the audio: would be an overrun on a live device
        pipe.step(record=False)
        due += chunk_s
    wall = clock() - t_start
    cpu = time.process_time() - cpu0
    return {"seconds": wall, "cpu_percent": 100.0 * cpu / wall if wall > 0 else None,
            "windows": pipe.windows - windows_before, "late_chunks": late}


def measure_allocation(pipe: Pipeline, windows: int) -> dict:
    """Bytes kept per window (steady-state growth) and the largest transient, under tracemalloc."""
    pipe.run_windows(3)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        pipe.run_windows(windows)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"windows": windows, "bytes_per_window": (end - start) / windows, "transient_peak_bytes": peak - start}
