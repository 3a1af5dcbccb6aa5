"""The steady-state hot path (source -> ring -> frames -> front end -> interpreter -> scores -> detector), and the
daemon's whole loop around it (level, top class, sink calls), allocate nothing per window, and their buffers are
the same objects from start to end."""

import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from edge.model.classifier import Classifier
from edge.core.detector import Detector, DetectorParams
from edge.core.framing import Framer
from edge.core.onsets import StreamOnsets
from edge.sinks.base import Sink

WINDOWS = 1000


def _buffers(framer, classifier):
    arrays = list(framer.buffers) + [classifier.scores]
    if classifier.frontend is not None:
        arrays += list(classifier.frontend.buffers)
    return [id(a) for a in arrays]


def _run(framer, classifier, detector, chunk: np.ndarray, windows: int) -> int:
    done = 0
    while done < windows:
        framer.push(chunk)
        while (w := framer.next_window()) is not None:
            scores = classifier.classify(w, framer.window_start)
            assert not detector.update(scores, done * 0.48, done * 0.48 + 0.975, -30.0)  # quiet: no events
            done += 1
    return done


@pytest.mark.parametrize("model,rate,channels", [
    ("coral_twin", 16000, 1),
    pytest.param("coral_twin", 44100, 2, marks=pytest.mark.slow),
    pytest.param("waveform_model", 48000, 1, marks=pytest.mark.slow),
])
def test_no_allocation_growth_over_1000_windows(request, model, rate, channels, class_map):
    classifier = Classifier.open(request.getfixturevalue(model), class_map, "cpu")
    framer = Framer(15600, 7680, rate_in_hz=rate, channels=channels, max_chunk_frames=4096)
    rng = np.random.default_rng(0)
    chunk = rng.integers(-8000, 8000, 1024 * channels).astype(np.int16)  # 1024 frames a read, like ALSA
    detector = Detector(classifier.labels, DetectorParams(allow=["Dog", "Cat"]))
    _run(framer, classifier, detector, chunk, 20)  # warm up: first-call caches
    before_ids = _buffers(framer, classifier)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        done = _run(framer, classifier, detector, chunk, WINDOWS)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done >= WINDOWS
    growth = end - start
    print(f"\n{model} {rate} Hz x{channels}: growth {growth} B over {done} windows, transient peak {peak - start} B")
    assert growth <= 1024, f"the hot path kept {growth} bytes over {done} windows"
    # transient: only small Python objects (views, ints), no per-window array buffers
    assert peak - start <= 16384, f"a window allocated {peak - start} bytes on the way"
    assert _buffers(framer, classifier) == before_ids, "a buffer was replaced"


class CountingSink(Sink):
    """A sink that takes every call the daemon makes and keeps nothing but counts."""

    def __init__(self):
        self.calls = 0

    def publish_event(self, event) -> None:
        self.calls += 1

    def set_state(self, label: str, on: bool, source: str = "") -> None:
        self.calls += 1

    def set_top(self, label: str, source: str = "") -> None:
        self.calls += 1

    def publish_scores(self, payload: dict, source: str = "") -> None:
        self.calls += 1

    def publish_metrics(self, payload: dict, source: str = "") -> None:
        self.calls += 1


class Meter:
    """Starts tracemalloc after `warmup` windows of the daemon and stops the daemon `windows` windows later, keeping
    (growth, transient peak, windows, buffers unchanged)."""

    def __init__(self, warmup: int, windows: int):
        self.daemon = None
        self._warmup, self._windows = warmup, windows
        self.measured = None
        self._start = self._ids = None

    def tick(self) -> None:
        d = self.daemon
        if self._start is None and d.windows >= self._warmup:
            self._ids = _daemon_buffers(d)
            tracemalloc.start()
            tracemalloc.reset_peak()
            self._start = (tracemalloc.get_traced_memory()[0], d.windows)
        elif self._start is not None and self.measured is None and d.windows >= self._start[1] + self._windows:
            end, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            self.measured = (end - self._start[0], peak - self._start[0], d.windows - self._start[1],
                             self._ids == _daemon_buffers(d))
            d.request_stop()


def _daemon_buffers(d) -> list[int]:
    arrays = [d.classifier.scores]
    for s in d.sources:
        arrays += list(s._loop.framer.buffers) + (list(s.frontend.buffers) if s.frontend is not None else [])
    return [id(a) for a in arrays]


class LoopedCapture:
    """Stands where a capture thread does: the same preallocated chunks, in turn, as fast as the daemon takes
    them, each with where a sound began as the capture thread finds it (so the onset windows are in the loop
    too); a file's pace (the loop takes a chunk only when it has no window waiting)."""

    def __init__(self, rate: int, channels: int, chunks: list, meter: Meter):
        self.source = SimpleNamespace(name="looped", rate_hz=rate, channels=channels, overruns=0)
        self.failed = self.problem = ""
        self.stalls = self.reopens = self.gaps = 0
        self.gap_s = 0.0
        self.first_audio = (-1, 0.0)  # a file's pace: dated by the daemon's clock
        self.handoff = SimpleNamespace(live=False, dropped_frames=0, bell=None)  # the daemon rings its own bell
        self.onset_lead_seconds = 0.0  # the daemon sets it, as it does the capture thread's
        self._onsets = None
        self.meter = meter
        self._chunks, self._next = chunks, 0

    def start(self) -> None:
        pass

    def request_stop(self) -> None:
        pass

    def stop(self, timeout_s: float) -> None:
        pass

    def want(self, frames: int) -> None:
        pass

    def check_stall(self) -> None:
        pass

    def revive(self) -> None:
        pass

    def take(self):
        self.handoff.bell.set()  # more is always there: the loop never sleeps
        chunk = self._chunks[self._next]
        self._next = (self._next + 1) % len(self._chunks)
        if self._onsets is None and self.onset_lead_seconds > 0:
            rate, channels = self.source.rate_hz, self.source.channels
            self._onsets = StreamOnsets(rate, channels, round(self.onset_lead_seconds * rate))
        return 1, chunk, self._onsets.add(chunk) if self._onsets is not None else -1


@pytest.mark.parametrize("model,rate,channels", [
    ("coral_twin", 16000, 1),
    pytest.param("coral_twin", 44100, 2, marks=pytest.mark.slow),
    pytest.param("waveform_model", 48000, 1, marks=pytest.mark.slow),
])
def test_the_whole_daemon_loop_allocates_nothing_per_window(request, model, rate, channels, class_map):
    """Daemon.run() end to end between the capture and the sink: window loop, level, classifier, detector, top
    and the sink calls, over 1000 windows."""
    _daemon_loop(request.getfixturevalue(model), class_map, rate, channels, sources=1)


def test_the_multi_source_loop_allocates_nothing_per_window(coral_twin, class_map):
    """Three sources on the one classifier: the scheduler (oldest ready window first, onsets first), each source's
    window loop, front end and detector, and the sink calls per source, over 1000 windows."""
    daemon = _daemon_loop(coral_twin, class_map, 16000, 1, sources=3)
    assert all(s.stats.windows >= WINDOWS // 4 for s in daemon.sources), [s.stats.windows for s in daemon.sources]


def test_the_daemon_loop_with_clips_on_allocates_nothing_per_window(coral_twin, class_map, tmp_path):
    """[clips] on: every window's speech score is noted for the privacy filter (no clip opens: nothing is
    detected), and the ring keeps the pre-roll; still nothing allocated per window."""
    daemon = _daemon_loop(coral_twin, class_map, 16000, 1, sources=1, clips=tmp_path / "clips")
    assert daemon.clip_writer is not None and daemon.sources[0].clips is not None
    assert daemon.sources[0]._loop.framer.ring.capacity >= 16000 * 3  # the pre-roll is in the ring


def _daemon_loop(model, class_map, rate: int, channels: int, sources: int, clips=None):
    from edge.app.daemon import Daemon
    from edge.config import parse_config
    from tools.rig.daemon import daemon_config_text

    classifier = Classifier.open(model, class_map, "cpu")
    named = [{"id": f"mic{k}", "device": f"hw:{k}"} for k in range(sources)] if sources > 1 else None
    cfg = parse_config(daemon_config_text(detector={"allow": ["Dog", "Cat"]}, mqtt={"enabled": False},
                                          metrics={"interval_seconds": 86400}, sources=named,
                                          clips={"enabled": True, "folder": clips} if clips else None),
                       "hot-path.toml")
    rng = np.random.default_rng(0)
    # quiet, then loud: a sound begins once per turn, so the onset windows run too
    chunks = [rng.integers(-a, a, 1024 * channels).astype(np.int16) for a in (30,) * 4 + (8000,) * 4]
    meter = Meter(warmup=20 * sources, windows=WINDOWS)
    captures = [LoopedCapture(rate, channels, chunks[k:] + chunks[:k], meter) for k in range(sources)]
    sink = CountingSink()
    sink.flush = meter.tick  # once a pass, where the loop holds nothing of the pass: the same point every time
    daemon = Daemon(cfg, classifier, captures if sources > 1 else captures[0], sink)
    meter.daemon = daemon
    assert daemon.run() == 0
    growth, peak, done, same_buffers = meter.measured
    print(f"\ndaemon loop, {sources} source(s), {model.name} {rate} Hz x{channels}: growth {growth} B over {done} "
          f"windows, transient peak {peak} B, {sink.calls} sink calls")
    assert done >= WINDOWS and sink.calls >= 1  # the top class was published
    assert daemon.onset_windows >= WINDOWS // 4, daemon.onset_windows
    # what is live differs between two moments by a few Python ints per source (each counter holds one, replaced
    # as it counts): bounded by the sources, not by the windows
    assert growth <= 1024 * sources, f"the daemon loop kept {growth} bytes over {done} windows"
    assert peak <= 16384, f"a window allocated {peak} bytes on the way"
    assert same_buffers, "a buffer was replaced"
    return daemon
