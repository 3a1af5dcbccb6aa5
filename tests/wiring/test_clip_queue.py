"""A clip writer that falls behind costs clips, never audio: with its thread stuck on a disk, the pool of blocks
runs out, the clip that needed one is skipped and counted, its end says so, and the events go on."""

import json
import threading

import numpy as np
import pytest

from edge.app.startup import build
from edge.config import parse_config
from edge.core.wavfile import write_wav
from edge.sinks import clipwriter
from tools.rig.daemon import daemon_config_text

pytestmark = pytest.mark.assets


def test_a_writer_stuck_on_its_disk_skips_clips_counted_and_every_event_still_goes_out(tmp_path, coral_twin, miaow,
                                                                                     monkeypatch):
    silence = np.zeros(16000 * 4, np.int16)
    long_cat = np.concatenate([np.tile(miaow, 6), silence])  # a Cat of about 20 s: more than the 5 s pool
    write_wav(tmp_path / "cat.wav", np.concatenate([silence, long_cat, long_cat]), 16000)
    stuck = threading.Event()
    real_write = clipwriter._Encoder.write

    def write(self, samples):
        stuck.wait(30)  # the disk does not answer until the test lets it go
        real_write(self, samples)
    monkeypatch.setattr(clipwriter._Encoder, "write", write)
    cfg = parse_config(daemon_config_text(
        audio={"source": "wav", "file": tmp_path / "cat.wav", "realtime": False}, model={"path": coral_twin},
        detector={"allow": ["Cat"]}, mqtt={"enabled": False}, jsonl={"enabled": True, "path": tmp_path / "e.jsonl"},
        clips={"enabled": True, "folder": tmp_path / "clips", "queue_seconds": 5, "privacy": "off"}), "q.toml")
    daemon = build(cfg)
    threading.Timer(20, stuck.set).start()  # never needed when all goes well: the stop releases it below
    try:
        assert daemon.run() == 0
    finally:
        stuck.set()
    events = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["type"] == "start"]
    ends = [e for e in events if e["type"] == "end"]
    assert len(starts) == len(ends) >= 2
    assert {e["clip"]["status"] for e in ends} >= {"skipped: queue full"}
    m = daemon.metrics()
    assert m["clips_skipped"] >= 1 and m["windows"] > 0


def test_a_clips_folder_that_cannot_be_made_turns_clips_off_once_and_every_event_goes_out(tmp_path, coral_twin, miaow,
                                                                                         caplog):
    silence = np.zeros(16000 * 4, np.int16)
    write_wav(tmp_path / "cat.wav", np.concatenate([silence, miaow, silence, miaow, silence]), 16000)
    (tmp_path / "file").write_text("not a folder")
    cfg = parse_config(daemon_config_text(
        audio={"source": "wav", "file": tmp_path / "cat.wav", "realtime": False}, model={"path": coral_twin},
        detector={"allow": ["Cat"]}, mqtt={"enabled": False}, jsonl={"enabled": True, "path": tmp_path / "e.jsonl"},
        clips={"enabled": True, "folder": tmp_path / "file" / "clips", "privacy": "off"}), "off.toml")
    daemon = build(cfg)
    assert daemon.run() == 0
    events = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    ends = [e for e in events if e["type"] == "end"]
    assert len(ends) == len(events) // 2 >= 2
    assert {e["clip"]["status"] for e in ends} == {"skipped: clips are off"}
    said = [r.getMessage() for r in caplog.records if "clips are off" in r.getMessage() and r.name == "edge.clips"]
    assert len(said) == 1 and "Not a directory" in said[0]
    assert "Not a directory" in daemon.metrics()["clips_problem"]


def test_without_soundfile_clips_are_wav_said_once_and_they_hold_the_audio(tmp_path, coral_twin, miaow, monkeypatch,
                                                                           caplog):
    import sys
    import wave
    monkeypatch.setitem(sys.modules, "soundfile", None)  # not installed: import fails
    fmt, why = clipwriter.clip_format("flac")
    assert fmt == "wav" and "pip install 'edge-audio[clips]'" in why
    silence = np.zeros(16000 * 4, np.int16)
    write_wav(tmp_path / "cat.wav", np.concatenate([silence, miaow, silence]), 16000)
    cfg = parse_config(daemon_config_text(
        audio={"source": "wav", "file": tmp_path / "cat.wav", "realtime": False}, model={"path": coral_twin},
        detector={"allow": ["Cat"]}, mqtt={"enabled": False}, jsonl={"enabled": True, "path": tmp_path / "e.jsonl"},
        clips={"enabled": True, "folder": tmp_path / "clips", "privacy": "off"}), "wav.toml")
    assert build(cfg).run() == 0
    ends = [e for e in map(json.loads, (tmp_path / "e.jsonl").read_text().splitlines()) if e["type"] == "end"]
    clip = ends[0]["clip"]
    assert clip["status"] == "kept" and clip["format"] == "wav" and clip["file"].endswith(".wav")
    with wave.open(str(tmp_path / "clips" / clip["file"])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.getnframes() == round(clip["seconds"] * 16000)
    assert sum("needs soundfile" in r.getMessage() for r in caplog.records) == 1


def test_two_sources_each_keep_their_own_clips_on_the_one_writer(tmp_path, coral_twin, miaow, assets):
    import soundfile
    silence = np.zeros(16000 * 4, np.int16)
    alarm, _ = soundfile.read(sorted((assets / "devset" / "clips").glob("esc50_clock_alarm_*"))[0], dtype="int16")
    write_wav(tmp_path / "a.wav", np.concatenate([silence, miaow, silence]), 16000)
    write_wav(tmp_path / "b.wav", np.concatenate([silence, alarm, silence]), 16000)
    cfg = parse_config(daemon_config_text(
        model={"path": coral_twin}, detector={"allow": ["Cat", "Beep, bleep"]}, mqtt={"enabled": False},
        jsonl={"enabled": True, "path": tmp_path / "e.jsonl"},
        clips={"enabled": True, "folder": tmp_path / "clips", "privacy": "off"},
        sources=[{"id": "kitchen", "source": "wav", "file": tmp_path / "a.wav", "realtime": False},
                 {"id": "hall", "source": "wav", "file": tmp_path / "b.wav", "realtime": False}]), "two.toml")
    assert build(cfg).run() == 0
    ends = [e for e in map(json.loads, (tmp_path / "e.jsonl").read_text().splitlines()) if e["type"] == "end"]
    assert {(e["source"], e["label"]) for e in ends} == {("kitchen", "Cat"), ("hall", "Beep, bleep")}
    wavs = {"kitchen": np.concatenate([silence, miaow, silence]), "hall": np.concatenate([silence, alarm, silence])}
    for e in ends:
        record = json.loads((tmp_path / "clips" / f"{e['event_id']}.json").read_text())
        assert e["clip"]["status"] == "kept" and record["source"] == e["source"] and record["label"] == e["label"]
        samples, _ = soundfile.read(tmp_path / "clips" / e["clip"]["file"], dtype="int16")
        # 16 kHz mono in, FLAC out: the clip is its own source's samples, exactly
        heard = wavs[e["source"]]
        k = int(np.flatnonzero(samples)[0])
        hits = np.flatnonzero((np.lib.stride_tricks.sliding_window_view(heard, 64) == samples[k:k + 64]).all(1))
        assert hits.size and any(np.array_equal(heard[h - k:h - k + len(samples)], samples) for h in hits if h >= k)
