"""What the bench pipeline runs besides the model: the daemon's detector as a per-window hook, and the audio it
plays (a WAV file, or generated noise). Used by `edge-audio bench` and the host tools' daemon and peer benchmarks."""

from __future__ import annotations

import numpy as np


def load_audio(path: str | None):
    from .measure import Audio
    if not path:
        rng = np.random.default_rng(0)  # pink-ish noise, 10 s
        pcm = (np.cumsum(rng.normal(0, 300, 16000 * 10)) % 8000 - 4000).astype(np.int16)
        return Audio(pcm, 16000, 1, "generated noise (10 s, 16 kHz)")
    from ..core.wavfile import read_wav
    wav = read_wav(path)  # raises for a file without audio
    return Audio(np.ascontiguousarray(wav.samples).reshape(-1), wav.rate_hz, wav.channels,
                 f"{path} ({wav.seconds:.1f} s, {wav.rate_hz} Hz, {wav.channels} ch)")


def detector_hook(labels: list[str], params) -> tuple:
    """(callback, onset_lead_samples): the daemon's detector (default settings, every label watched) as the
    per-window callback, and the lead of the daemon's onset windows, for the pipeline's window loop to add them."""
    from ..core.detector import Detector
    detector = Detector(labels)
    rate, window_s = params.sample_rate_hz, params.window_samples / params.sample_rate_hz

    def on_window(scores, start_sample: int, extra: bool = False) -> None:
        t = start_sample / rate
        if extra:
            detector.onset(scores, t, t + window_s, -30.0)
        else:
            detector.update(scores, t, t + window_s, -30.0)
    return on_window, round(detector.cfg.onset_lead_seconds * rate)
