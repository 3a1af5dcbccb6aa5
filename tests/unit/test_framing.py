import numpy as np
import pytest

from edge.core.framing import Framer, RingBuffer


def test_ring_wraps_and_reads_back_what_was_written():
    ring = RingBuffer(10)
    data = np.arange(1, 26, dtype=np.int16)
    for i in range(0, 25, 7):
        ring.write(data[i:i + 7])
    out = np.zeros(6, np.float32)
    ring.read_float(19, out)  # crosses the wrap point
    np.testing.assert_allclose(out * 32768, data[19:25])
    with pytest.raises(IndexError):
        ring.read_float(10, out)  # overwritten already


def _frame_all(framer, pcm, chunk):
    windows = []
    for i in range(0, pcm.size, chunk):
        framer.push(pcm[i:i + chunk])
        while (w := framer.next_window()) is not None:
            windows.append((framer.window_start, w.copy()))
    return windows


def test_windows_are_the_stream_at_each_hop():
    pcm = np.random.default_rng(0).integers(-30000, 30000, 16000 * 4).astype(np.int16)
    windows = _frame_all(Framer(15600, 7680), pcm, 1000)
    assert [s for s, _ in windows] == list(range(0, pcm.size - 15600 + 1, 7680))
    for start, w in windows:
        np.testing.assert_array_equal(w * 32768, pcm[start:start + 15600])


def test_stereo_is_downmixed():
    left = np.full(16000 * 2, 1000, np.int16)
    right = np.full(16000 * 2, 3000, np.int16)
    pcm = np.stack([left, right], axis=1).reshape(-1)
    windows = _frame_all(Framer(15600, 7680, channels=2), pcm, 2048)
    assert windows and np.allclose(windows[0][1] * 32768, 2000)


@pytest.mark.parametrize("seconds,expected", [(0.5, 1), (0.975, 1), (1.0, 2), (5.0, 10)])
def test_end_of_file_padding_matches_the_reference_count(seconds, expected):
    # YAMNet's reference: one patch for anything up to 0.975 s, then one more per started 0.48 s
    pcm = np.ones(int(seconds * 16000), np.int16)
    framer = Framer(15600, 7680)
    windows = _frame_all(framer, pcm, 4096)
    framer.finish()
    framer.pad_to_complete()
    while framer.next_window() is not None:
        windows.append(None)
    assert len(windows) == expected


def test_44k1_input_becomes_16k_windows():
    rate = 44100
    t = np.arange(rate * 3) / rate
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    windows = _frame_all(Framer(15600, 7680, rate_in_hz=rate), pcm, 4096)
    assert len(windows) == 5  # 48000 samples at 16 kHz: starts 0, 7680, ..., 30720
    w = windows[1][1]
    spectrum = np.abs(np.fft.rfft(w))
    assert abs(np.argmax(spectrum) * 16000 / w.size - 440) < 2


def test_a_consumer_that_falls_behind_skips_windows_and_counts_them():
    framer = Framer(15600, 1600, max_chunk_frames=8192)
    pcm = np.zeros(8192, np.int16)
    for _ in range(6):
        framer.push(pcm)  # never drained
    assert framer.next_window() is not None
    assert framer.skipped_windows > 0


def test_windows_on_a_grid_start_on_its_multiples_and_keep_the_average_hop():
    """A 0.4875 s hop (7800 samples, not a whole number of 10 ms frames): on the 160-sample grid every window
    starts on a frame boundary, within half a frame of k x 7800, and is still the stream at that start."""
    pcm = np.random.default_rng(2).integers(-30000, 30000, 16000 * 8).astype(np.int16)
    windows = _frame_all(Framer(15600, 7800, grid_samples=160), pcm, 1024)
    starts = [s for s, _ in windows]
    assert all(s % 160 == 0 and abs(s - k * 7800) <= 80 for k, s in enumerate(starts))
    assert starts[-1] - starts[0] == pytest.approx(7800 * (len(starts) - 1), abs=80)
    for start, w in windows:
        np.testing.assert_array_equal(w * 32768, pcm[start:start + 15600])


def test_an_onset_window_at_the_end_of_a_recording_does_not_take_the_padded_grid_window():
    def starts(extra_end):
        f = Framer(15600, 7680, grid_samples=160)
        for size in (8192, 8192, 8192, 2704):  # 27280 samples: the grid's third window needs padding
            f.push(np.ones(size, np.int16))
        out = []
        while f.next_window() is not None:
            out.append((f.window_start, f.extra))
        if extra_end:
            assert f.add_window_ending_after(extra_end)
        while f.next_window() is not None:
            out.append((f.window_start, f.extra))
        f.pad_to_complete()
        while f.next_window() is not None:
            out.append((f.window_start, f.extra))
        return out
    assert starts(None) == [(0, False), (7680, False), (15360, False)]
    assert starts(27280) == [(0, False), (7680, False), (11680, True), (15360, False)]  # the grid still covers all


def test_an_offset_grid_starts_its_windows_that_far_into_the_stream():
    """A daemon spreads its live sources over the hop: source k's windows start at its offset + n x hop."""
    pcm = (np.arange(40000) % 30000).astype(np.int16)
    framer = Framer(15600, 7680, offset_samples=3072)
    framer.push(pcm[:8192])
    framer.push(pcm[8192:16384])
    starts = []
    for i in range(16384, pcm.size, 4096):
        while framer.next_window() is not None:
            starts.append(framer.window_start)
        framer.push(pcm[i:i + 4096])
    assert starts[:3] == [3072, 3072 + 7680, 3072 + 2 * 7680]
    assert framer.next_window_end() == (starts[-1] + 7680 + 15600, False)

