"""The steady-state hot path (source -> ring -> frames -> front end -> interpreter -> scores -> detector)
allocates nothing per window, and its buffers are the same objects from start to end."""

import tracemalloc

import numpy as np
import pytest

from edge.model.classifier import Classifier
from edge.core.detector import Detector, DetectorParams
from edge.core.framing import Framer

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
    ("coral_twin", 44100, 2),
    ("waveform_model", 48000, 1),
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
