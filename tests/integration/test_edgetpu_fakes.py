"""The Edge TPU path against a board that misbehaves, with real parts: small libedgetpu.so.1 builds made with the
system C compiler (their delegate entry point segfaults, hangs or returns no delegate, or they report a build the
compatibility table marks known-bad), a USB Coral under a fake sysfs root, the real Coral Edge TPU YAMNet and its
CPU twin, the real interpreter, a real Mosquitto. Nothing in the kit is replaced: every command runs as a user
would run it, and must run on the CPU with the reason (or exit 2 with it), never crash."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, assert_one_line_error, run_cli
from fakelib import compiler, fake_tpu_env
from tools.rig.daemon import write_daemon_config
from tools.rig.mqtt import Subscriber
from tools.rig.ports import have

pytestmark = pytest.mark.skipif(compiler() is None, reason="needs a C compiler (cc) to build the fake runtimes")

# variant -> the verdict word the kit must report
VERDICTS = {"segv": "crashed", "hang": "hung", "null": "failed", "known-bad": "known-bad"}


@pytest.fixture
def coral_dir(assets, tmp_path):
    """Coral's Edge TPU YAMNet beside its CPU twin and the class map (the layout of a plain-file install)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("yamnet_spectra_in_edgetpu.tflite", "yamnet_spectra_in.tflite"):
        (folder / name).symlink_to(assets / "models" / "coral" / name)
    (folder / "yamnet_class_map.csv").symlink_to(assets / "models" / "yamnet_class_map.csv")
    return folder


def _env(variant, tmp_path):
    env = fake_tpu_env(variant, tmp_path / "fake")
    env["EDGE_AUDIO_PROBE_TIMEOUT"] = "3"
    return env


@pytest.mark.parametrize("variant", list(VERDICTS))
def test_classify_runs_on_the_cpu_or_refuses_with_the_reason(variant, tmp_path, assets, coral_dir):
    env = _env(variant, tmp_path)
    model = coral_dir / "yamnet_spectra_in_edgetpu.tflite"
    wav = assets / "audio" / "miaow_16k.wav"
    r = run_cli("classify", wav, "--model", model, "--delegate", "auto", "--top-k", "3", "--json", env=env)
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    summary = json.loads(r.out.splitlines()[-1])
    assert summary["summary"] and summary["top"][0]["label"] in ("Cat", "Animal", "Domestic animals, pets")
    said = "\n".join(r.err_lines)
    assert "on cpu" in said and "yamnet_spectra_in.tflite" in said and VERDICTS[variant] in said, said
    assert "probed in" in said  # the first run asks a child process
    # the same request again: the verdict comes from the cache, no child is started (but a failure, which is
    # what an unplugged or inaccessible TPU gives, is asked again)
    again = run_cli("classify", wav, "--model", model, "--top-k", "1", env=env)
    assert again.code == 0 and VERDICTS[variant] in again.err, again.err
    assert ("(cached verdict)" in again.err) == (variant != "null"), again.err
    # the user asked for the TPU: exit 2 with one line naming the cause and the fix
    r = run_cli("classify", wav, "--model", model, "--delegate", "edgetpu", env=env)
    line = assert_one_line_error(r, 2, VERDICTS[variant])
    assert "doctor" in line or "matched pair" in line


@pytest.mark.parametrize("variant", list(VERDICTS))
def test_doctor_shows_the_pair_and_the_verdict(variant, tmp_path, assets):
    env = _env(variant, tmp_path)
    assert run_cli("fetch", "bundle", "--mirror", assets, module="tools").code == 0
    r = run_cli("doctor", "--json", env=env)
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["edgetpu_library"].endswith("libedgetpu.so.1")
    assert report["edge_tpus"] and report["edge_tpus"][0].startswith("usb")
    assert report["edgetpu_probe"]["verdict"] == VERDICTS[variant], report["edgetpu_probe"]
    assert report["edgetpu_probe"]["label"].startswith("BuildLabel(")
    r = run_cli("doctor", env=env)
    assert r.code == 0 and VERDICTS[variant] in r.out and "install" in r.out, r.out


@pytest.mark.skipif(not have("mosquitto"), reason="needs Debian's mosquitto (make test installs it)")
@pytest.mark.parametrize("ids", [[""], ["a", "b"]], ids=["one source", "two sources"])
@pytest.mark.parametrize("variant", ["segv", "known-bad"])
def test_daemon_runs_on_the_cpu_and_publishes_the_reason(variant, ids, tmp_path, assets, coral_dir, broker):
    """With two sources ([[sources]] a and b, each replaying the miaow), both run on the one CPU model: each
    source's events and metrics on its own topics, the device's metrics with the reason."""
    env = _env(variant, tmp_path)
    b = broker()
    sub = Subscriber(b.port, topics=("edge-audio/#",))
    wav = {"source": "wav", "file": assets / "audio" / "miaow_16k.wav", "realtime": False}
    sources = None if ids == [""] else [{"id": i, **wav} for i in ids]
    cfg = write_daemon_config(tmp_path / "cfg.toml", device={"id": "porch"}, audio=wav if sources is None else {},
                              model={"path": coral_dir / "yamnet_spectra_in_edgetpu.tflite", "delegate": "auto"},
                              detector={"allow": ["Cat"]}, mqtt={"host": "127.0.0.1", "port": b.port},
                              sources=sources)
    topics = ["edge-audio/porch" + (f"/{i}" if i else "") for i in ids]
    try:
        proc = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(cfg)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert sub.wait(lambda s: all(s.payloads(f"{t}/metrics") for t in topics + ["edge-audio/porch"]), 10)
        metrics = json.loads(sub.payloads("edge-audio/porch/metrics")[-1])
        own = {t: json.loads(sub.payloads(f"{t}/metrics")[-1]) for t in topics}
        events = {t: [json.loads(p)["type"] for p in sub.payloads(f"{t}/events")] for t in topics}
    finally:
        sub.close()
    assert metrics["delegate"] == "cpu" and metrics["windows"] >= 10 * len(ids)
    assert VERDICTS[variant] in metrics["delegate_reason"], metrics["delegate_reason"]
    assert all(m["windows"] >= 10 for m in own.values()), own
    assert events == dict.fromkeys(topics, ["start", "end"]), events
