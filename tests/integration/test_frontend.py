import numpy as np

from edge.core.frontend import FrontEndParams, LogMelFrontEnd, mel_matrix
from edge.core.wavfile import read_wav


def test_mel_matrix_shape_and_dc_bin():
    m = mel_matrix(FrontEndParams())
    assert m.shape == (257, 64)
    assert not m[0].any()  # the DC bin is zeroed, as tf.signal.linear_to_mel_weight_matrix does
    assert (m >= 0).all() and (m.max(axis=0) > 0.5).all()  # every band has a real triangle


def test_window_samples_is_yamnet_window():
    assert FrontEndParams().window_samples == 15600


def _windows(audio, hop=7680, n=15600):
    return [(s, audio[s:s + n].copy()) for s in range(0, audio.size - n + 1, hop)]


def test_overlapping_windows_compute_each_frame_once_and_match_independent_windows():
    rng = np.random.default_rng(1)
    audio = rng.uniform(-0.5, 0.5, 16000 * 5).astype(np.float32)
    streaming, fresh = LogMelFrontEnd(), LogMelFrontEnd()
    windows = _windows(audio)
    for start, w in windows:
        got = streaming.compute(w, start).copy()
        want = fresh.compute(w)  # no start: computed from scratch
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert streaming.frames_computed == 96 + (len(windows) - 1) * 48
    assert fresh.frames_computed == 96 * len(windows)


def test_hop_not_aligned_to_stft_hop_recomputes():
    fe = LogMelFrontEnd()
    audio = np.zeros(40000, np.float32)
    fe.compute(audio[:15600], 0)
    fe.compute(audio[100:15700], 100)  # 100 samples is not a whole 10 ms frame
    assert fe.frames_computed == 192


def test_matches_tensorflow_reference_on_real_audio(assets, tensorflow):
    tf = tensorflow
    mel = tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125.0, 7500.0)

    def reference(x):
        magnitude = tf.abs(tf.signal.stft(x, 400, 160, 512))  # periodic Hann by default
        return tf.math.log(tf.matmul(magnitude, mel) + 0.001).numpy()

    worst = 0.0
    fe = LogMelFrontEnd()
    for name in ("miaow_16k.wav", "speech_whistling2.wav"):
        audio = read_wav(assets / "audio" / name).samples[:, 0].astype(np.float32) / 32768.0
        for start, w in _windows(audio):
            worst = max(worst, float(np.abs(fe.compute(w, start) - reference(w)).max()))
        fe.reset()
    assert worst <= 1e-3, worst


def test_frames_are_shared_at_a_hop_off_the_frame_grid():
    """Through the window loop at a 0.4875 s hop, each 10 ms frame is computed once and every patch equals the
    patch of that window computed on its own."""
    from edge.core.stream import WindowLoop, recording_windows
    pcm = (np.random.default_rng(3).uniform(-0.5, 0.5, 16000 * 6) * 32767).astype(np.int16)
    loop = WindowLoop(15600, 7800, grid_samples=160)
    streaming, fresh = LogMelFrontEnd(), LogMelFrontEnd()
    windows = 0
    for window, start in recording_windows(pcm, loop):
        got = streaming.compute(window, start).copy()
        np.testing.assert_allclose(got, fresh.compute(window), atol=1e-5)
        windows += 1
    assert windows > 5
    assert streaming.frames_computed < 96 + (windows - 1) * 50  # shared: ~49 new frames a window, not 96
