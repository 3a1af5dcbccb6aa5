"""`edge-audio selftest` on this machine with real parts: the default bundle from the asset mirror (installed by
`edge-audio fetch`), a capture device through ALSA's file plugin, a real Mosquitto; exit 0 / 2 / 78 and JSON."""

from __future__ import annotations

import json

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
    assert [c[n]["status"] for n in ("config", "bundle", "model", "clip", "audio", "broker")] == ["ok"] * 6
    assert "4 files match their sha256" in c["bundle"]["detail"]
    assert "on cpu" in c["model"]["detail"] and "libedgetpu" in c["model"]["detail"]  # which delegate and why
    assert c["clip"]["detail"].startswith("miaow_16k.wav: Cat (mean of 13 windows: Cat 0.73")
    assert "ALSA testmic opens at 16000 Hz" == c["audio"]["detail"]
    assert c["broker"]["detail"].endswith("answers")
    text = run_cli("selftest", "--config", cfg, env=mic.env)
    assert text.code == 0 and text.out.strip().endswith("selftest passed (0 warnings)")


def test_a_broker_that_does_not_answer_warns_unless_it_is_required(tmp_path, bundle):
    cfg = config(tmp_path, bundle, audio={"source": "stdin"}, mqtt={"host": "127.0.0.1", "port": free_port()})
    r = run_cli("selftest", "--config", cfg, "--json", "--broker-timeout", "2")
    assert r.code == 0, r.err
    c = checks(r.out)
    assert c["broker"]["status"] == "warning" and "connection refused" in c["broker"]["detail"]
    assert c["audio"]["status"] == "warning" and "not ALSA" in c["audio"]["detail"]
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
