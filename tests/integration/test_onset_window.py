"""The fast onset's extra window through the real daemon, model and recordings: a bark after silence starts its
event on the window that ends 0.3 s after the bark began, sooner than the hop grid would; with the extra window
off, the same stream starts it later. The daemon runs in-process on a WAV (as fast as it goes) with a fixed clock,
so stream time is exact."""

import numpy as np
import pytest

from edge.app.daemon import Daemon
from edge.audio import make_source
from edge.audio.capture import Capture
from edge.config import parse_config
from edge.core.onsets import LevelRise
from edge.core.wavfile import read_wav, write_wav
from edge.model.classifier import Classifier
from edge.sinks.base import Sink
from tools.rig.daemon import daemon_config_text

pytestmark = pytest.mark.assets

T0 = 1000.0
RATE = 16000


class Starts(Sink):
    def __init__(self):
        self.events = []

    def publish_event(self, event):
        self.events.append(event)


def _stream(assets, tmp_path):
    """Silence, the bark, silence. The bark begins (as edge.core.onsets finds it) 0.05 s before a window of the
    hop grid ends: that window holds too little of it, and the grid's next one ends 0.53 s after it began."""
    bark = read_wav(assets / "audio" / "dog_975ms.wav").samples[:, 0]
    lead_in = np.zeros(RATE, np.int16)
    rise = LevelRise(RATE).scan(np.concatenate([lead_in, bark])) - lead_in.size  # where the bark begins
    assert rise >= 0
    onset = int((0.975 + 4 * 0.48 - 0.05) * RATE)
    pcm = np.concatenate([np.zeros(onset - rise, np.int16), bark, np.zeros(5 * RATE, np.int16)])
    path = tmp_path / "bark.wav"
    write_wav(path, pcm, RATE)
    return path, onset / RATE


def _run(path, coral_twin, class_map, detector: dict):
    cfg = parse_config(daemon_config_text(audio={"source": "wav", "file": path, "realtime": False},
                                          model={"path": coral_twin}, detector={"allow": ["Dog", "Bark"], **detector},
                                          mqtt={"enabled": False}))
    sink = Starts()
    daemon = Daemon(cfg, Classifier.open(coral_twin, class_map, "cpu"), Capture(make_source(cfg.audio), cfg.audio),
                    sink=sink, clock=lambda: T0)
    assert daemon.run() == 0
    starts = [e for e in sink.events if e.type == "start"]
    assert starts, "the bark started no event"
    return daemon, min(e.start_ts - T0 + 0.975 for e in starts)  # stream time of the deciding window's end


def test_a_bark_starts_on_the_onset_window_sooner_than_on_the_grid(assets, coral_twin, class_map, tmp_path):
    path, onset = _stream(assets, tmp_path)
    fast, decided = _run(path, coral_twin, class_map, {})
    grid, decided_grid = _run(path, coral_twin, class_map, {"onset_window_seconds": 0.0})
    assert fast.onset_windows >= 1 and grid.onset_windows == 0
    assert fast.metrics()["onset_windows"] == fast.onset_windows
    off_grid = (decided - 0.975) / 0.48
    assert abs(off_grid - round(off_grid)) > 0.1, decided  # an extra window decided, not one of the hop grid
    assert decided - onset <= 0.32, (decided, onset)  # the lead (0.3 s) after the sound began, on the frame grid
    assert decided < decided_grid, (decided, decided_grid)
    assert fast.windows == grid.windows  # the hop grid's windows are the same either way
