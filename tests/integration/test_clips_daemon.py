"""Clips from a real daemon (a real process, real recordings, a real Mosquitto): each kept clip is the audio the
daemon heard over the clip's span, pre-roll included, at the place its record says; the clip published over MQTT
is the file, byte for byte; and with privacy on, speech withholds a clip or is silenced in it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge.core.wavfile import write_wav
from tools.rig.daemon import DaemonProcess, write_daemon_config
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have, wait_until

pytestmark = [pytest.mark.skipif(not have("mosquitto"), reason="needs Debian's mosquitto (make test installs it)"),
              pytest.mark.slow]
RATE = 16000
# non-speech recordings: a quiet stretch, an alarm clock, thunder (events well after the first 3 s: full pre-roll)
SCENE = ("esc50_wind_2-104952-A-16.wav", "esc50_clock_alarm_2-104475-A-37.wav", "esc50_wind_2-104952-A-16.wav",
         "esc50_thunderstorm_*.wav", "esc50_wind_2-104952-A-16.wav")


def _devset(assets: Path, pattern: str) -> np.ndarray:
    path = sorted((assets / "devset" / "clips").glob(pattern))[0]
    samples, rate = soundfile.read(path, dtype="int16")
    assert rate == RATE
    return samples


def _band_limited(x: np.ndarray, factor: int) -> np.ndarray:
    """`x` at `factor` times its rate (an ideal band-limited resampling, by FFT: not the kit's own resampler)."""
    spectrum = np.fft.rfft(x.astype(np.float64))
    wide = np.zeros(len(x) * factor // 2 + 1, complex)
    wide[:spectrum.size] = spectrum
    return np.fft.irfft(wide, len(x) * factor) * factor


def _config(tmp_path: Path, model, port: int, wav: Path, clips: dict, detector: dict | None = None) -> Path:
    return write_daemon_config(
        tmp_path / "clips.toml", device={"id": "porch"}, model={"path": model},
        audio={"source": "wav", "file": wav, "realtime": False}, detector=detector or {},
        mqtt={"host": "127.0.0.1", "port": port, "spool_file": tmp_path / "spool.db", "clips": True,
              "reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1.0},
        metrics={"interval_seconds": 30}, clips={"enabled": True, "folder": tmp_path / "clips", **clips})


def _run(tmp_path, broker, model, wav: Path, clips: dict, detector: dict | None = None):
    """The daemon over `wav` to its end; (every end event, {event id: clip payload}) from the subscriber."""
    b = broker()
    sub = Subscriber(b.port, "edge-audio/porch/#")
    try:
        daemon = DaemonProcess(_config(tmp_path, model, b.port, wav, clips, detector))
        try:  # a WAV replay ends by itself, its last ends and clips out
            assert daemon.proc.wait(120) == 0, daemon.log_tail(20)
        finally:
            daemon.kill()
        def ends() -> list[dict]:
            return [e for e in map(json.loads, sub.payloads("/events")) if e["type"] == "end"]
        kept = lambda: [e for e in ends() if e.get("clip", {}).get("file")]  # noqa: E731
        assert wait_until(lambda: ends() and len(_clip_messages(sub)) >= len(kept()), 20), daemon.log_tail(20)
        return ends(), _clip_messages(sub)
    finally:
        sub.close()


def _clip_messages(sub) -> dict:
    return {m.topic.rsplit("/", 1)[1]: m.payload for m in sub.received() if "/clips/" in m.topic}


def _place(clip: np.ndarray, heard: np.ndarray) -> tuple[int, float]:
    """Where `clip` sits in `heard` (by cross-correlation) and their correlation there."""
    n = len(heard) + len(clip)
    size = 1 << (n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(clip, size)), size)
    at = int(np.argmax(xc[:len(heard) - len(clip) + 1]))
    part = heard[at:at + len(clip)]
    return at, float(np.corrcoef(part, clip)[0, 1])


def test_each_kept_clip_is_the_audio_heard_over_its_span_and_mqtt_carries_the_file(tmp_path, broker, coral_twin,
                                                                                    assets):
    scene = np.concatenate([_devset(assets, name) for name in SCENE])
    # the device hears it at 48 kHz in stereo (the daemon downmixes and resamples to 16 kHz)
    wide = np.clip(_band_limited(scene, 3), -32768, 32767)
    write_wav(tmp_path / "porch.wav", np.stack([wide, wide * 0.5], axis=1).round().astype(np.int16), 48000)
    ends, published = _run(tmp_path, broker, coral_twin, tmp_path / "porch.wav", {"privacy": "off"})

    kept = [e for e in ends if e["clip"]["status"] == "kept"]
    assert len(kept) >= 2, [e["clip"] for e in ends]
    heard = scene.astype(np.float64) * 0.75  # the downmix of the two channels
    anchors = []
    for e in kept:
        clip = e["clip"]
        path = tmp_path / "clips" / clip["file"]
        data = path.read_bytes()
        assert clip["bytes"] == len(data) and clip["sha256"] == hashlib.sha256(data).hexdigest()
        assert published[e["event_id"]] == data  # over MQTT: the file, byte for byte
        samples, rate = soundfile.read(path, dtype="int16")
        assert rate == RATE and clip["format"] == "flac"
        assert clip["seconds"] == pytest.approx(len(samples) / RATE, abs=1e-3)
        at, r = _place(samples.astype(np.float64), heard)
        assert r >= 0.99, (e["label"], r)
        # pre-roll: 3 s before the start (less only for an event in the recording's first 3 s: its clip starts
        # with the recording), 2 s after the end
        assert clip["offset_s"] == pytest.approx(3.0, abs=1e-3) or (at == 0 and clip["offset_s"] < 3.0)
        # (less for one the recording's end cut: the daemon stopped there)
        assert clip["seconds"] == pytest.approx(clip["offset_s"] + e["duration_s"] + 2.0, abs=0.01) or \
            at + len(samples) >= len(heard) - RATE
        # where the clip sits, less its offset, is where the event started: the same moment for every clip
        anchors.append(at / RATE + clip["offset_s"] - e["start_ts"])
        print(f"{e['label']}: {clip['seconds']} s clip, offset {clip['offset_s']} s, correlation {r:.4f}")
    print(f"{len(kept)} kept clips; where each sits less its offset: spread {1e3 * (max(anchors) - min(anchors)):.2f} ms")
    assert max(anchors) - min(anchors) < 0.002, anchors
    json_records = sorted(p.stem for p in (tmp_path / "clips").glob("*.json"))
    assert json_records == sorted(e["event_id"] for e in ends if "clip" in e)


def test_speech_withholds_a_clip_and_mute_silences_its_speech_windows(tmp_path, broker, coral_twin, assets):
    speech, rate = soundfile.read(assets / "audio" / "speech_whistling2.wav", dtype="int16")
    speech = speech if speech.ndim == 1 else speech[:, 0]
    assert rate == RATE
    # an alarm clock, a voice over it after 5 s, then the alarm alone: one long event that speech falls in
    alarm = _devset(assets, "esc50_clock_alarm_2-104475-A-37.wav")
    quiet = _devset(assets, "esc50_wind_2-104952-A-16.wav")
    talk = alarm.astype(np.int32)
    talk[RATE:RATE + 24000] += speech[:24000]  # the voice: its first 1.5 s
    # then a devset recording with a voice in it (people beside a pig): a Speech event of its own
    voices = _devset(assets, "esc50_pig_4-250869-A-2.wav")
    scene = np.concatenate([quiet, alarm, np.clip(talk, -32768, 32767).astype(np.int16), alarm, quiet, voices,
                            quiet])
    write_wav(tmp_path / "talk.wav", scene, RATE)
    watch = {"allow": ["Beep, bleep", "Alarm clock", "Speech"]}

    for run in ("withhold", "mute"):
        (tmp_path / run).mkdir()
    ends, published = _run(tmp_path / "withhold", broker, coral_twin, tmp_path / "talk.wav", {}, watch)
    withheld = [e for e in ends if e["clip"]["status"] == "withheld: speech"]
    assert withheld, [e["clip"] for e in ends]
    assert [p.suffix for p in (tmp_path / "withhold" / "clips").glob(withheld[0]["event_id"] + ".*")] == [".json"]
    assert withheld[0]["event_id"] not in published
    # a speech label gets no clip unless it is asked for by name
    assert {e["clip"]["status"] for e in ends if e["label"] == "Speech"} == {"withheld: speech label"}

    ends, _ = _run(tmp_path / "mute", broker, coral_twin, tmp_path / "talk.wav", {"privacy": "mute"}, watch)
    kept = [e for e in ends if e["clip"]["status"] == "kept" and e["clip"]["seconds"] > 10]
    assert kept, [e["clip"] for e in ends]
    clip = kept[0]["clip"]
    samples, _ = soundfile.read(tmp_path / "mute" / "clips" / clip["file"], dtype="int16")
    at, _ = _place(samples.astype(np.float64), scene.astype(np.float64))
    voice = np.arange(11 * RATE, 11 * RATE + 24000) - at  # where the voice is in the clip
    voice = voice[(voice >= 0) & (voice < len(samples))]
    assert voice.size > RATE  # the clip spans the voice
    assert np.mean(samples[voice] == 0) > 0.9, "the voice was not silenced"
    assert np.abs(samples[samples != 0].astype(np.int32)).mean() > 100  # the alarm around it is kept
    assert np.mean(samples == 0) < 0.6
