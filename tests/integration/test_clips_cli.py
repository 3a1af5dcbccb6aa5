"""`edge-audio clips` as users run it (the installed console script), on a clips folder laid out as the clip
store writes it (docs: the clips design): real FLAC and WAV clips cut from real recordings, their JSON records
beside them, a withheld clip with a record only."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import Result, assert_one_line_error

EDGE_AUDIO = Path(sys.executable).parent / "edge-audio"
T0 = 1_767_000_000.0  # the newest clip's first sample (unix time)
HEN = "ab12cd34e5f6478899aabbccddeeff00"
DOOR = "ab12ef56a1b2438899aabbccddeeff01"  # shares "ab12" with HEN: that prefix is ambiguous
BABY = "c0ffee00a1b2438899aabbccddeeff02"
TALK = "d00d0000a1b2438899aabbccddeeff03"
ALARM = "e1e1e1e1a1b2438899aabbccddeeff04"


def clips(*args, env: dict | None = None) -> Result:
    proc = subprocess.run([str(EDGE_AUDIO), "clips", *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})))
    return Result(proc)


def _recording(assets: Path, kind: str) -> np.ndarray:
    """The first devset recording of a kind (ESC-50: 16 kHz mono, 5 s), int16."""
    from edge.core.wavfile import read_wav
    path = min((assets / "devset" / "clips").glob(f"esc50_{kind}_*.wav"))
    return read_wav(path).samples[:, 0].copy()


def _resampled(path: Path) -> np.ndarray:
    """A 44.1 kHz recording at 16 kHz through the kit's own resampler, int16."""
    from edge.core.resample import Resampler
    from edge.core.wavfile import read_wav
    wav = read_wav(path)
    r = Resampler(wav.rate_hz, 16000)
    x = wav.samples[:, 0].astype(np.float32)
    out = [r.process(x[i:i + 8192]).copy() for i in range(0, len(x), 8192)] + [r.flush()]
    return np.clip(np.rint(np.concatenate(out)), -32768, 32767).astype(np.int16)


def _write(folder: Path, event_id: str, samples: np.ndarray | None, start_ts: float, label: str, source: str = "",
           offset_s: float = 1.0, event_s: float = 2.0, status: str = "kept", fmt: str | None = "flac") -> dict:
    """One clip as the store writes it: the audio (when kept), then its record."""
    record = {"event_id": event_id, "source": source, "label": label, "device_id": "pi", "status": status,
              "file": None, "format": None, "start_ts": start_ts, "event_start_ts": start_ts + offset_s,
              "event_end_ts": start_ts + offset_s + event_s, "offset_s": offset_s, "seconds": 0.0, "bytes": 0,
              "sha256": None, "sample_rate": 16000, "written_ts": start_ts + 10}
    if samples is not None:
        path = folder / f"{event_id}.{fmt}"
        soundfile.write(path, samples, 16000, format=fmt.upper(), subtype="PCM_16")
        blob = path.read_bytes()
        record.update(file=path.name, format=fmt, seconds=round(len(samples) / 16000, 3), bytes=len(blob),
                      sha256=hashlib.sha256(blob).hexdigest())
    (folder / f"{event_id}.json").write_text(json.dumps(record, sort_keys=True))
    return record


@pytest.fixture(scope="module")
def folder(assets, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    hen, door, alarm = (_recording(assets, kind) for kind in ("hen", "door_wood_creaks", "clock_alarm"))
    _write(folder, HEN, hen, T0, "Chicken, rooster", source="porch", offset_s=1.5, event_s=2.0)
    _write(folder, DOOR, door, T0 - 600, "Door", source="hall", offset_s=0.5, event_s=1.0)
    _write(folder, BABY, _resampled(assets / "audio" / "baby_5000ms.wav"), T0 - 1200, "Baby cry, infant cry",
           source="nursery", offset_s=2.0, event_s=9.0, fmt="wav")  # the event runs past the clip's end
    _write(folder, TALK, None, T0 - 1800, "Door", source="hall", status="withheld: speech", fmt=None)
    _write(folder, ALARM, alarm, T0 - 2400, "Alarm clock", source="porch", status="too long: cut at 30 s",
           event_s=40.0)
    (folder / f".{HEN[:6]}leftover.flac.tmp").write_bytes(b"half written")  # a write in progress: not a clip
    return folder


def _records(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def _table(text: str) -> list[dict]:
    """The listing back as rows of {column: cell}, cut where the header's columns start."""
    lines = text.splitlines()
    head = lines[0]
    names = head.split()
    starts = [head.index(n) for n in names]
    return [{n: line[a:b].strip() for n, a, b in zip(names, starts, starts[1:] + [None])} for line in lines[1:]]


def test_the_list_is_a_table_newest_first_with_each_clips_facts(folder):
    r = clips("--folder", folder)
    assert r.code == 0, r.err
    assert r.out.splitlines()[0].split() == ["TIME", "SOURCE", "LABEL", "SECONDS", "SIZE", "STATUS", "ID"]
    rows = _table(r.out)
    assert [row["ID"] for row in rows] == [i[:8] for i in (HEN, DOOR, BABY, TALK, ALARM)]
    records = _records(folder)
    from edge.core.files import size_text
    for row in rows:
        rec = next(v for k, v in records.items() if k.startswith(row["ID"]))
        assert row["TIME"] == datetime.fromtimestamp(rec["event_start_ts"]).isoformat(timespec="seconds")
        assert (row["SOURCE"], row["LABEL"], row["STATUS"]) == (rec["source"], rec["label"], rec["status"])
        assert row["SECONDS"] == f"{rec['seconds']:.1f}"
        assert row["SIZE"] == (size_text(rec["bytes"]) if rec["file"] else "-")
    assert rows[0]["SIZE"].endswith("KiB") and rows[0]["SECONDS"] == "5.0"
    assert rows[3]["STATUS"] == "withheld: speech" and rows[4]["STATUS"] == "too long: cut at 30 s"


def test_the_list_filters_by_label_and_source_and_stops_at_the_limit(folder):
    r = clips("--folder", folder, "--label", "Door")
    assert [row["ID"] for row in _table(r.out)] == [DOOR[:8], TALK[:8]]
    r = clips("--folder", folder, "--source", "porch")
    assert [row["ID"] for row in _table(r.out)] == [HEN[:8], ALARM[:8]]
    r = clips("--folder", folder, "--source", "porch", "--label", "Door")
    assert r.code == 0 and len(r.out.splitlines()) == 1 and "no clips of label 'Door' and source 'porch'" in r.out
    r = clips("--folder", folder, "--limit", "2")
    assert [row["ID"] for row in _table(r.out)] == [HEN[:8], DOOR[:8]]
    assert "3 older clips not shown" in r.err


def test_json_gives_the_records_as_they_are_one_per_line(folder):
    r = clips("--folder", folder, "--json", "--label", "Door")
    assert r.code == 0, r.err
    assert [json.loads(line) for line in r.out.splitlines()] == [_records(folder)[DOOR], _records(folder)[TALK]]


def test_an_empty_or_missing_folder_says_so_and_how_to_turn_clips_on(tmp_path):
    for where in (tmp_path, tmp_path / "never-made"):
        r = clips("--folder", where)
        assert r.code == 0 and r.err == ""
        assert r.out.count("\n") == 1 and "no clips in" in r.out and "[clips] enabled = true" in r.out
    r = clips("--folder", tmp_path, "--json")
    assert r.code == 0 and r.out == "" and "no clips in" in r.err  # stdout stays JSON lines


def test_the_folder_comes_from_the_daemons_config(folder, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[clips]\nenabled = true\nfolder = "{folder}"\n')
    r = clips("--config", config, "--limit", "1")
    assert r.code == 0 and _table(r.out)[0]["ID"] == HEN[:8]
    r = clips("play", HEN[:8], "--config", config, "--folder", folder)
    assert_one_line_error(r, 2, "--folder and --config")


def test_out_writes_a_wav_of_the_clips_samples_or_a_copy_of_its_file(folder, tmp_path):
    for event_id in (HEN, BABY):
        r = clips("out", event_id[:6], tmp_path / f"{event_id}.wav", "--folder", folder)
        assert r.code == 0, r.err
        original, _ = soundfile.read(folder / _records(folder)[event_id]["file"], dtype="int16")
        from edge.core.wavfile import read_wav
        wav = read_wav(tmp_path / f"{event_id}.wav")
        assert wav.rate_hz == 16000 and wav.channels == 1
        np.testing.assert_array_equal(wav.samples[:, 0], original)
    r = clips("out", HEN[:6], tmp_path / "hen.flac", "--folder", folder)
    assert r.code == 0 and (tmp_path / "hen.flac").read_bytes() == (folder / f"{HEN}.flac").read_bytes()
    assert_one_line_error(clips("out", HEN[:6], tmp_path / "hen.flac", "--folder", folder), 2, "--force")
    assert clips("out", HEN[:6], tmp_path / "hen.flac", "--folder", folder, "--force").code == 0
    assert_one_line_error(clips("out", HEN[:6], tmp_path / "hen.mp3", "--folder", folder), 2, ".wav")
    assert not list(tmp_path.glob(".*.tmp"))


def test_png_writes_a_real_png(folder, tmp_path):
    r = clips("png", HEN[:8], tmp_path / "hen.png", "--folder", folder)
    assert r.code == 0, r.err
    blob = (tmp_path / "hen.png").read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 20_000
    assert "1.50 s to 3.50 s" in r.err
    assert_one_line_error(clips("png", HEN[:8], tmp_path / "hen.png", "--folder", folder), 2, "--force")


@pytest.mark.parametrize("event_id, span", [(HEN, (1.5, 3.5)), (DOOR, (0.5, 1.5)), (BABY, (2.0, 5.0))])
def test_png_marks_the_events_span_where_offset_s_puts_it(folder, tmp_path, event_id, span):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from edge.app.clipplot import png
    from edge.app.clips import read_clip, title_of
    record = _records(folder)[event_id]
    samples, rate = read_clip(record, folder / record["file"])
    drawn = png(record, samples, rate, tmp_path / "clip.png", title_of(record))
    assert drawn.span_s == pytest.approx(span, abs=1e-3)  # the baby's event is cut at the clip's end
    left, right = drawn.axes_px
    for x, s in zip(drawn.span_px, span):
        assert x == pytest.approx(left + (right - left) * s / (len(samples) / rate), abs=1.0)
    image = imread(tmp_path / "clip.png")
    assert image.shape[:2] == drawn.size_px[::-1]
    green = np.nonzero((image[drawn.row_px, :, 0] < 0.1) & (image[drawn.row_px, :, 1] > 0.9)
                       & (image[drawn.row_px, :, 2] < 0.1))[0]
    assert abs(green.min() - drawn.span_px[0]) <= 2 and abs(green.max() - drawn.span_px[1]) <= 2


def test_png_without_matplotlib_says_what_to_install(folder, tmp_path):
    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('not installed here')\n")
    r = clips("png", HEN[:8], tmp_path / "x.png", "--folder", folder, env={"PYTHONPATH": str(shim.parent)})
    assert_one_line_error(r, 2, "pip install 'edge-audio[plot]'")
    assert not (tmp_path / "x.png").exists()


@pytest.fixture
def playback(tmp_path) -> tuple[dict, Path]:
    """An ALSA playback device `cap` (the file plugin over null) that writes what it plays to out.raw."""
    pytest.importorskip("alsaaudio")
    raw = tmp_path / "out.raw"
    conf = tmp_path / "asound.conf"
    conf.write_text(f'pcm.cap {{ type file slave.pcm "null" file "{raw}" format "raw" }}\n')
    return {"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}"}, raw


@pytest.mark.parametrize("event_id", [HEN, BABY])
def test_play_sends_the_clips_samples_to_the_alsa_device(folder, playback, event_id):
    env, raw = playback
    r = clips("play", event_id[:8], "--device", "cap", "--folder", folder, env=env)
    assert r.code == 0, r.err
    original, _ = soundfile.read(folder / _records(folder)[event_id]["file"], dtype="int16")
    played = np.fromfile(raw, "<i2")
    np.testing.assert_array_equal(played[:len(original)], original)
    assert not played[len(original):].any()  # at most the rest of the last period, silent


def test_a_missing_alsa_device_is_one_line(folder, playback):
    env, _ = playback
    r = clips("play", HEN[:8], "--device", "nosuchdevice", "--folder", folder, env=env)
    assert_one_line_error(r, 2, "nosuchdevice")
    assert r.err.count("\n") == 1


def test_unknown_ambiguous_and_withheld_clips_are_one_line_errors(folder):
    assert_one_line_error(clips("play", "ffff", "--folder", folder), 2, "no clip 'ffff'")
    assert_one_line_error(clips("out", "ab12", "x.wav", "--folder", folder), 2, "more than one clip")
    line = assert_one_line_error(clips("png", TALK[:8], "x.png", "--folder", folder), 2, "has no audio")
    assert "withheld: speech" in line and "privacy" in line


def test_a_damaged_audio_file_is_one_line(folder, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    record = _write(bad, HEN, np.zeros(16000, np.int16), T0, "Dog")
    (bad / record["file"]).write_bytes(b"fLaC" + bytes(range(256)) * 8)  # not what the record says
    assert_one_line_error(clips("out", HEN[:8], tmp_path / "x.wav", "--folder", bad), 2, "damaged")
    record["sha256"] = hashlib.sha256((bad / record["file"]).read_bytes()).hexdigest()
    (bad / f"{HEN}.json").write_text(json.dumps(record, sort_keys=True))  # a record that matches a broken file
    assert_one_line_error(clips("png", HEN[:8], tmp_path / "x.png", "--folder", bad), 2, "cannot read")
    (bad / record["file"]).unlink()
    assert_one_line_error(clips("play", HEN[:8], "--folder", bad), 2, "gone")


@pytest.mark.parametrize("action", [[], ["play"], ["out"], ["png"]])
def test_each_help_says_what_it_does_with_an_example(action):
    r = clips(*action, "--help")
    assert r.code == 0 and "examples:" in r.out
    assert (f"edge-audio clips {action[0]} " if action else "edge-audio clips --label") in r.out
