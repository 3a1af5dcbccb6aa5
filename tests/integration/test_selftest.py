"""`edge-audio selftest` on this machine with real parts: the default bundle from the asset mirror (installed by
`edge-audio fetch`), a capture device through ALSA's file plugin, a real Mosquitto; exit 0 / 2 / 78 and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from tools.rig.daemon import write_daemon_config
from tools.rig.mic import FileMic
from tools.rig.ports import free_port


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, assets):
    dest = tmp_path_factory.mktemp("bundle") / "yamnet-coral"
    r = run_cli("fetch", "bundle", "--mirror", assets, "--dest", dest)  # the device-side command
    assert r.code == 0, r.err
    return dest


def config(tmp_path, bundle, **sections) -> str:
    return str(write_daemon_config(tmp_path / "config.toml", device={"id": "selftest"}, model={"path": bundle},
                                   **sections))


def checks(out: str) -> dict:
    return {c["name"]: c for c in json.loads(out)["checks"]}


def test_a_good_device_passes_and_says_what_it_checked(tmp_path, bundle, assets, broker):
    mic = FileMic(tmp_path / "mic", np.zeros(16000, np.int16))
    b = broker()
    cfg = config(tmp_path, bundle, audio={"source": "alsa", "device": "testmic", "rate_hz": 16000},
                 mqtt={"host": "127.0.0.1", "port": b.port})
    r = run_cli("selftest", "--config", cfg, "--json", env=mic.env)
    assert r.code == 0, r.err
    c = checks(r.out)
    steps = ("config", "bundle", "model", "clip", "thresholds", "audio", "sinks", "clips", "daemon", "broker")
    assert [c["name"] for c in json.loads(r.out)["checks"]] == list(steps)  # the daemon's start-up, in its order
    assert [c[n]["status"] for n in steps] == ["ok"] * len(steps)
    assert "4 files match their sha256" in c["bundle"]["detail"]
    assert "on cpu" in c["model"]["detail"] and "libedgetpu" in c["model"]["detail"]  # which delegate and why
    assert c["clip"]["detail"].startswith("miaow_16k.wav: Cat (mean of 13 windows: Cat 0.73")
    assert "ALSA 'testmic' opens at 16000 Hz" == c["audio"]["detail"]
    assert "spool" in c["sinks"]["detail"] and "no calibration" in c["thresholds"]["detail"]
    assert c["broker"]["detail"].endswith("answers") and c["clips"]["detail"] == "off"
    text = run_cli("selftest", "--config", cfg, env=mic.env)
    assert text.code == 0 and text.out.strip().endswith("selftest passed (0 warnings)")


def test_a_broker_that_does_not_answer_warns_unless_it_is_required(tmp_path, bundle):
    cfg = config(tmp_path, bundle, audio={"source": "stdin"}, mqtt={"host": "127.0.0.1", "port": free_port()})
    r = run_cli("selftest", "--config", cfg, "--json", "--broker-timeout", "2")
    assert r.code == 0, r.err
    c = checks(r.out)
    assert c["broker"]["status"] == "warning" and "connection refused" in c["broker"]["detail"]
    assert c["audio"]["status"] == "warning" and "standard input" in c["audio"]["detail"]
    required = run_cli("selftest", "--config", cfg, "--require-broker", "--broker-timeout", "2")
    assert_one_line_error(required, 2, "selftest failed: broker", "connection refused")


def test_a_config_error_is_78_and_a_bad_bundle_is_2(tmp_path, bundle):
    bad = config(tmp_path, bundle, detector={"treshold": 0.4})
    assert_one_line_error(run_cli("selftest", "--config", bad), 78, "unknown key 'detector.treshold'")
    clip = bundle.parent / "damaged"
    import shutil
    shutil.copytree(bundle, clip)
    (clip / "miaow_16k.wav").write_bytes((clip / "miaow_16k.wav").read_bytes()[:-4] + b"\0\0\0\0")
    r = run_cli("selftest", "--bundle", clip, "--json")
    assert r.code == 2 and checks(r.out)["bundle"]["status"] == "failed"
    assert "miaow_16k.wav: sha256 does not match" in checks(r.out)["bundle"]["detail"]
    assert "model" not in checks(r.out)  # nothing is loaded from a bundle that failed its hashes


def run_line(cfg: str) -> str:
    """The one error line `edge-audio run` stops with for this config."""
    return assert_one_line_error(run_cli("run", "--config", cfg, timeout=120), 78).split("error: ", 1)[1]


def test_what_would_stop_run_fails_selftest_with_the_same_line(tmp_path, bundle):
    """A WAV file that is not there, an unknown label in the config, an ALSA device that does not exist: each
    stops `run`, and selftest (the same start-up) stops with the same line and exit status."""
    cases = {"wav": {"audio": {"source": "wav", "file": tmp_path / "gone.wav"}},
             "label": {"audio": {"source": "stdin"}, "detector": {"allow": ["Cat", "Purring dragon"]}}}
    for name, sections in cases.items():
        (tmp_path / name).mkdir()
        cfg = config(tmp_path / name, bundle, mqtt={"enabled": False}, **sections)
        line = run_line(cfg)
        r = run_cli("selftest", "--config", cfg)
        error = assert_one_line_error(r, 78)
        assert line in error, (name, line, error)
    alsa = tmp_path / "alsa"
    alsa.mkdir()
    cfg = config(alsa, bundle, audio={"source": "alsa", "device": "nosuchmic"}, mqtt={"enabled": False})
    r = run_cli("selftest", "--config", cfg, "--json")
    assert r.code == 78 and checks(r.out)["audio"]["status"] == "failed", r.out
    assert "nosuchmic" in checks(r.out)["audio"]["detail"]
    assert "sinks" not in checks(r.out)  # the start-up stops at its first failure, as run's does


def calibration(path: Path, thresholds: dict, **info) -> Path:
    lines = ["[calibration]", *(f"{k} = {json.dumps(v)}" for k, v in info.items()), "", "[detector.thresholds]",
             *(f"{json.dumps(k)} = {v}" for k, v in thresholds.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_calibration_for_another_model_or_labels_is_ignored_with_a_warning_and_the_daemon_runs(
        tmp_path, bundle, assets):
    """A site calibration made for labels this model lacks, or for another model's sha256, is ignored with one
    warning naming why and how to renew it; selftest passes, and `run` runs on the other thresholds."""
    wav = assets / "audio" / "miaow_16k.wav"
    made = {"foreign labels": calibration(tmp_path / "labels.toml", {"Dog": 0.4, "Barking hyena": 0.5},
                                          model="yamnet-coral"),
            "another model": calibration(tmp_path / "model.toml", {"Cat": 0.9}, model="custom-dogs",
                                         model_sha256="ab" * 32)}
    for why, path in made.items():
        folder = tmp_path / why.replace(" ", "-")
        folder.mkdir()
        cfg = config(folder, bundle, audio={"source": "wav", "file": wav, "realtime": False}, mqtt={"enabled": False},
                     calibration={"file": path}, detector={"allow": ["Cat"]})
        r = run_cli("selftest", "--config", cfg, "--json")
        assert r.code == 0, r.err
        c = checks(r.out)["thresholds"]
        assert c["status"] == "warning" and f"{path} ignored" in c["detail"], c
        assert "edge-audio calibrate" in c["detail"] and "deploy --calibrate" in c["detail"]
        expect = "Barking hyena" if why == "foreign labels" else "made for model custom-dogs (sha256 abababababab)"
        assert expect in c["detail"]
        run = run_cli("run", "--config", cfg, timeout=120)
        assert run.code == 0 and "Traceback" not in run.err, run.err
        assert f"{path} ignored" in run.err
        events = [json.loads(l) for l in run.out.splitlines() if l.startswith("{")]
        assert [e["label"] for e in events if e["type"] == "start"] == ["Cat"]  # at the default threshold, not 0.9


def test_a_calibration_made_for_this_model_is_used(tmp_path, bundle):
    from edge.model.bundle import resolve_model
    digest = resolve_model(bundle).digest
    path = calibration(tmp_path / "cal.toml", {"Cat": 0.61}, model="yamnet-coral", model_sha256=digest,
                       labels=["Cat"], source="60 min live from alsa hw:1,0")
    cfg = config(tmp_path, bundle, audio={"source": "stdin"}, mqtt={"enabled": False},
                 calibration={"file": path}, detector={"allow": ["Cat"]})
    r = run_cli("selftest", "--config", cfg, "--json")
    assert r.code == 0, r.err
    assert checks(r.out)["thresholds"]["detail"] == f"1 watched label(s) with a state; calibration {path}"
    shown = run_cli("run", "--config", cfg, "--show-config")
    assert shown.code == 0 and any(l.startswith("Cat ") and "0.610" in l and "calibration" in l
                                   for l in shown.out.splitlines()), shown.out


def test_clips_on_say_their_format_and_folder_and_a_folder_that_takes_no_file_warns(tmp_path, bundle):
    (tmp_path / "file").write_text("")
    good = config(tmp_path, bundle, audio={"source": "stdin"}, mqtt={"enabled": False},
                  clips={"enabled": True, "folder": tmp_path / "clips"})
    r = run_cli("selftest", "--config", good, "--json")
    assert r.code == 0, r.err
    assert checks(r.out)["clips"]["detail"] == f"flac in {tmp_path / 'clips'}, privacy withhold"
    assert (tmp_path / "clips").is_dir() and not list((tmp_path / "clips").iterdir())  # tried, nothing left
    Path(good).write_text(Path(good).read_text().replace(str(tmp_path / "clips"), str(tmp_path / "file" / "c")))
    r = run_cli("selftest", "--config", good, "--json")
    assert r.code == 0, r.err  # the daemon runs without clips: a warning, not a failure
    c = checks(r.out)["clips"]
    assert c["status"] == "warning" and "Not a directory: the daemon will run without clips" in c["detail"]
