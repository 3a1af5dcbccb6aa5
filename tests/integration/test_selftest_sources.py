"""`edge-audio selftest` and `edge-audio doctor --config` of a daemon with several [[sources]]: a line per source
under the audio step (text and JSON), a camera that does not answer now is a warning, a missing WAV file fails with
exit 78 naming its source; no URL credentials in anything shown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from tools.rig.daemon import write_daemon_config
from tools.rig.mic import FileMic
from tools.rig.ports import free_port

SECRET = "s3cret-pw"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, assets):
    dest = tmp_path_factory.mktemp("bundle") / "yamnet-coral"
    r = run_cli("fetch", "bundle", "--mirror", assets, "--dest", dest)
    assert r.code == 0, r.err
    return dest


def sources_config(tmp_path, bundle, assets, wav=None) -> str:
    """Three sources: a WAV replay, an ALSA device (the `file` plugin) and a camera on a port nobody listens on."""
    sources = [
        {"id": "kitchen", "source": "wav", "file": wav or assets / "audio" / "miaow_16k.wav",
         "detector": {"allow": ["Cat"]}},
        {"id": "hall", "source": "alsa", "device": "testmic", "rate_hz": 16000},
        {"id": "porch", "source": "url", "url": f"rtsp://viewer:{SECRET}@127.0.0.1:{free_port()}/stream2",
         "reopen_max_seconds": 60, "detector": {"allow": ["Dog", "Doorbell"]}},
    ]
    return str(write_daemon_config(tmp_path / "config.toml", device={"id": "selftest"}, model={"path": bundle},
                                   detector={"allow": ["Dog"]}, mqtt={"enabled": False}, sources=sources))


def test_selftest_names_every_source_and_a_camera_that_is_off_is_a_warning(tmp_path, bundle, assets):
    mic = FileMic(tmp_path / "mic", np.zeros(16000, np.int16))
    cfg = sources_config(tmp_path, bundle, assets)
    r = run_cli("selftest", "--config", cfg, "--json", env=mic.env)
    assert r.code == 0, r.err
    report = json.loads(r.out)
    audio = [c for c in report["checks"] if c["name"] == "audio"]
    assert [c["source"] for c in audio] == ["kitchen", "hall", "porch"]
    assert [c["status"] for c in audio] == ["ok", "ok", "warning"]
    assert audio[0]["detail"].startswith("sources.kitchen: ") and "opens at 16000 Hz" in audio[0]["detail"]
    assert audio[1]["detail"] == "sources.hall: ALSA 'testmic' opens at 16000 Hz"
    assert audio[2]["detail"].startswith("sources.porch: stream rtsp://") and "not answering now" in audio[2]["detail"]
    assert "for 3 sources" in next(c for c in report["checks"] if c["name"] == "daemon")["detail"]
    assert "sources.porch.detector.allow" in report["values"] and "sources.porch.url" not in report["values"]
    text = run_cli("selftest", "--config", cfg, env=mic.env)
    assert text.code == 0, text.err
    lines = [l for l in text.out.splitlines() if " audio " in l]
    assert len(lines) == 3 and lines[2].lstrip().startswith("warn")
    assert text.out.strip().endswith("selftest passed (1 warning)")
    assert SECRET not in r.out + r.err + text.out + text.err


def test_a_missing_wav_of_one_source_fails_with_78_naming_it(tmp_path, bundle, assets):
    mic = FileMic(tmp_path / "mic", np.zeros(16000, np.int16))
    cfg = sources_config(tmp_path, bundle, assets, wav=tmp_path / "gone.wav")
    assert_one_line_error(run_cli("selftest", "--config", cfg, env=mic.env), 78, "selftest failed: audio",
                          "sources.kitchen", "gone.wav")
    r = run_cli("selftest", "--config", cfg, "--json", env=mic.env)
    failed = [c for c in json.loads(r.out)["checks"] if c["status"] == "failed"]
    assert r.code == 78 and [c["source"] for c in failed] == ["kitchen"]


def test_doctor_lists_each_source_and_whether_it_opens(tmp_path, bundle, assets):
    mic = FileMic(tmp_path / "mic", np.zeros(16000, np.int16))
    cfg = sources_config(tmp_path, bundle, assets, wav=tmp_path / "gone.wav")
    r = run_cli("doctor", "--config", cfg, "--model", bundle, "--json", env=mic.env)
    assert r.code == 0, r.err
    report = json.loads(r.out)
    rows = {s["id"]: s for s in report["sources"]}
    assert list(rows) == ["kitchen", "hall", "porch"]
    assert rows["kitchen"]["opens"] is False and "gone.wav" in rows["kitchen"]["status"]
    assert rows["hall"]["opens"] is True and rows["hall"]["what"] == "ALSA 'testmic'"
    assert rows["porch"]["opens"] is False and "not answering now" in rows["porch"]["status"]
    assert rows["porch"]["what"].startswith("stream rtsp://") and report["ffmpeg"].startswith("/")
    text = run_cli("doctor", "--config", cfg, "--model", bundle, env=mic.env)
    assert text.code == 0, text.err
    assert "source porch" in text.out and "source hall" in text.out and "ffmpeg" in text.out
    assert SECRET not in r.out + r.err + text.out + text.err


def test_doctor_without_a_config_says_whether_ffmpeg_is_there(tmp_path):
    r = run_cli("doctor", "--json", env={"PATH": str(tmp_path)})
    assert r.code == 0, r.err
    assert json.loads(r.out)["ffmpeg"].startswith("not installed")
    text = run_cli("doctor")
    assert any(l.split()[:1] == ["ffmpeg"] for l in text.out.splitlines()), text.out


def test_doctor_with_a_bad_config_is_one_line_and_78(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[sources]]\nid = 'porch'\nsource = 'url'\n")
    assert_one_line_error(run_cli("doctor", "--config", bad), 78, "sources.porch.url")
