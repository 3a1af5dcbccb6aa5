"""The side-by-side bench (`python -m tools.bench.peers`): its table with the kit's rows on real models, and every way a peer
can fail turning into one line instead of a crash. Peers themselves are installed only by `make bench`."""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_cli

sys.path.insert(0, str(ROOT))
from tools.bench.peers import peer_common, peers  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, assets) -> Path:
    dest = tmp_path_factory.mktemp("bundle") / "yamnet-coral"
    r = run_cli("fetch", "bundle", "--dest", dest, "--mirror", assets, module="tools")
    assert r.code == 0, r.err
    return dest


@pytest.mark.slow
def test_side_by_side_kit_rows_and_peer_failures_in_one_line(tmp_path, bundle, waveform_model, class_map, assets):
    """The kit's two rows are measured for real, in alternating rounds; a peer whose venv cannot be made is one line
    in the table."""
    out = tmp_path / "out"
    broken = out / "peers" / "mediapipe"
    broken.mkdir(parents=True)
    (broken / ".venv").write_text("not a folder: venv creation fails")  # MediaPipe cannot be set up
    r = run_cli("--model", waveform_model, "--labels", class_map, "--audio", assets / "audio" / "speech_whistling2.wav",
                "--bundle", bundle, "--seconds", "0.3", "--rounds", "2", "--peers", "mediapipe", "--out", out,
                module="tools.bench.peers")
    assert r.code == 0, r.out + r.err
    assert "Traceback" not in r.err
    lines = r.out.splitlines()
    kit = next(l for l in lines if l.startswith("kit: waveform model (same file)"))
    coral = next(l for l in lines if l.startswith("kit: default path (Coral bundle, auto)"))
    mediapipe = [l for l in lines if l.startswith("MediaPipe AudioClassifier")]
    assert len(mediapipe) == 1 and "failed:" in mediapipe[0], r.out
    assert "mediapipe: unavailable:" in r.err
    assert "1.00x" in kit
    assert float(coral[44:].split()[0]) > 0  # windows/s column
    assert any(l.startswith("kit, default path: end to end / bare invoke") and "2 paired rounds" in l for l in lines)
    assert any(l.startswith("note: kit default path: model yamnet_spectra_in") for l in lines)
    summary = json.loads((out / "side_by_side.json").read_text())
    assert [row["name"] for row in summary["rows"]][:2] == ["kit: waveform model (same file)",
                                                           "kit: default path (Coral bundle, auto)"]
    assert "error" in summary["rows"][2] and summary["rows"][0]["rounds"] == 2
    assert summary["runners"]["kit_coral"]["info"]["input_kind"] == "logmel_patch"
    assert len(summary["runners"]["kit_coral"]["rounds"]) == 2


def test_a_peer_that_cannot_import_is_one_line(tmp_path, assets, waveform_model):
    """The real MediaPipe script run by an interpreter without MediaPipe: a PeerError naming the module."""
    with pytest.raises(peers.PeerError) as info:
        peers.run_peer(peers.MEDIAPIPE, Path(sys.executable), waveform_model,
                       assets / "audio" / "speech_whistling2.wav", 0.2, 0.48)
    message = str(info.value)
    assert "\n" not in message and "mediapipe" in message and "exit 1" in message


def test_a_runner_that_cannot_start_is_one_line(assets, waveform_model):
    """The MediaPipe script in --serve mode, run by an interpreter without MediaPipe: a PeerError, not a hang."""
    cmd = peers.peer_command(peers.MEDIAPIPE, Path(sys.executable), waveform_model,
                             assets / "audio" / "speech_whistling2.wav", 0.48)
    with pytest.raises(peers.PeerError) as info:
        peers.Runner("MediaPipe", cmd, peers.peer_env(), start_timeout_s=60)
    message = str(info.value)
    assert "\n" not in message and "mediapipe" in message and "exit 1" in message


@pytest.mark.slow
def test_a_wheel_that_will_not_install_is_one_line(tmp_path):
    bogus = peers.Peer("bogus", "Bogus", str(tmp_path / "no-such-project"), "peer_mediapipe.py", "import bogus")
    with pytest.raises(peers.PeerError) as info:
        peers.ensure_venv(bogus, tmp_path / "peers", lambda m: None)
    message = str(info.value)
    assert message.startswith("pip install") and "failed" in message and "\n" not in message
    assert (tmp_path / "peers" / "bogus" / "install.log").is_file()


def test_missing_system_library_without_root_says_what_to_install(monkeypatch):
    needy = peers.Peer("needy", "Needy", "x", "peer_tasklib.py", "", (("no-such-lib-xyz", "libno-such-xyz0"),))
    monkeypatch.setattr(peers.os, "geteuid", lambda: 1000)
    with pytest.raises(peers.PeerError, match="sudo apt-get install libno-such-xyz0"):
        peers.ensure_system_libs(needy, lambda m: None)


def test_peer_windows_follow_the_kit_hop_grid(tmp_path):
    pcm = (np.arange(40000) % 2000 - 1000).astype(np.int16)
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    looped = peer_common.read_pcm(str(path))
    windows = peer_common.Windows(looped, 0.48)
    first, second = windows.next(), windows.next()
    assert first.dtype == np.float32 and first.size == 15600
    np.testing.assert_allclose(second[:100], pcm[7680:7780] / 32768.0)
    with wave.open(str(tmp_path / "b.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(44100)
        w.writeframes(np.zeros(2000, np.int16).tobytes())
    with pytest.raises(peer_common.PeerError, match="16 kHz mono"):
        peer_common.read_pcm(str(tmp_path / "b.wav"))


def test_bad_arguments_are_one_line(tmp_path, waveform_model, class_map):
    r = run_cli("--peers", "bogus", "--model", waveform_model, "--labels", class_map, module="tools.bench.peers")
    assert_one_line_error(r, 2, "unknown peer")
    r = run_cli("--model", tmp_path / "none.tflite", module="tools.bench.peers")
    assert_one_line_error(r, 2, "not found")
    r = run_cli("--help", module="tools.bench.peers")
    assert r.code == 0 and "example:" in r.out
