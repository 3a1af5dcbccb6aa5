"""`edge-audio calibrate` of a config with several [[sources]]: one source at a time (--source ID), written where
the daemon loads that source's calibration (calibration-<id>.toml in the state directory, or its own
[sources.calibration] file), with that source's watched labels; without --source, one line naming the ids, exit 2."""

import numpy as np

from conftest import assert_one_line_error, run_cli
from edge.core.wavfile import write_wav
from tools.rig.daemon import write_daemon_config


def config(tmp_path, assets, kitchen_file=""):
    clip = assets / "audio" / "miaow_16k.wav"
    sources = [{"id": "kitchen", "source": "wav", "file": clip, "detector": {"allow": ["Cat", "Dog"]},
                **({"calibration": {"file": kitchen_file}} if kitchen_file else {})},
               {"id": "hall", "source": "alsa", "device": "testmic", "rate_hz": 16000},
               {"id": "porch", "source": "url", "url": "rtsp://viewer:CHANGE-ME@camera-porch.lan:554/stream2",
                "detector": {"allow": ["Doorbell", "Bark"]}}]
    return write_daemon_config(tmp_path / "site.toml", model={"path": assets / "models" / "coral" /
                                                              "yamnet_spectra_in.tflite", "delegate": "cpu"},
                               detector={"allow": ["Cough"]}, mqtt={"enabled": False}, sources=sources)


def test_several_sources_and_no_source_named_is_one_line_naming_them(assets, tmp_path):
    cfg = config(tmp_path, assets)
    clip = assets / "audio" / "miaow_16k.wav"
    r = run_cli("calibrate", "--config", cfg, "--wav", clip, "--no-plots")
    assert_one_line_error(r, 2, "3 sources (kitchen, hall, porch)", "--source ID")
    assert_one_line_error(run_cli("calibrate", "--config", cfg, "--wav", clip, "--source", "garage"), 2,
                          "--source garage: not a source of", "kitchen, hall, porch")
    plain = write_daemon_config(tmp_path / "plain.toml", audio={"source": "wav", "file": clip},
                                detector={"allow": ["Cat"]}, mqtt={"enabled": False})
    assert_one_line_error(run_cli("calibrate", "--config", plain, "--wav", clip, "--source", "kitchen"), 2,
                          "has no [[sources]]")


def test_one_source_is_written_where_the_daemon_loads_it_with_its_own_labels(assets, tmp_path):
    cfg = config(tmp_path, assets, kitchen_file=str(tmp_path / "own" / "kitchen.toml"))
    state = tmp_path / "state"
    env = {"EDGE_AUDIO_HOME": str(state), "STATE_DIRECTORY": ""}
    clip = assets / "audio" / "miaow_16k.wav"
    r = run_cli("calibrate", "--config", cfg, "--source", "porch", "--wav", clip, clip, "--no-plots", env=env)
    assert r.code == 0, r.err
    rows = [l.split()[0] for l in r.out.splitlines()[3:]]
    assert rows == ["Doorbell", "Bark"]  # porch's own allow list, not [detector]'s
    written = state / "calibration-porch.toml"
    assert written.is_file() and 'source = "source porch: 2 WAV file(s)"' in written.read_text()
    assert f"wrote {written} (the daemon loads it from there)" in r.err
    r = run_cli("calibrate", "--config", cfg, "--source", "kitchen", "--wav", clip, "--no-plots", env=env)
    assert r.code == 0, r.err
    assert (tmp_path / "own" / "kitchen.toml").is_file() and not (state / "calibration-kitchen.toml").exists()
    shown = run_cli("run", "--config", cfg, "--show-config", env=env)  # the daemon's view: each source its own file
    assert shown.code == 0, shown.err
    assert "calibration-porch.toml" in shown.out and str(tmp_path / "own" / "kitchen.toml") in shown.out


def test_a_silent_source_is_named_in_its_one_line(assets, tmp_path):
    from tools.rig.mic import FileMic
    mic = FileMic(tmp_path / "mic", np.zeros(16000 * 30, np.int16))
    cfg = config(tmp_path, assets)
    r = run_cli("calibrate", "--config", cfg, "--source", "hall", "--minutes", "0.2", "--no-plots", "--out",
                tmp_path / "c.toml", env=mic.env)
    assert "listening to ALSA 'testmic'" in r.err
    assert_one_line_error(r, 2, "sources.hall: ALSA 'testmic'", "silent")
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(16000 * 20, np.int16), 16000)
    assert_one_line_error(run_cli("calibrate", "--config", cfg, "--source", "kitchen", "--wav", silent,
                                  "--no-plots", "--out", tmp_path / "c.toml"), 2, "sources.kitchen:", "silent")
