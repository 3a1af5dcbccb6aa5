"""The Edge TPU probe against fake runtime libraries built with the system C compiler (a delegate entry point
that segfaults, hangs or returns no delegate, and a build the compatibility table marks known-bad), with the
real Coral Edge TPU YAMNet and the real interpreter in a real child process; and its on-disk verdict cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge.core.errors import DelegateError
from edge.model import edgetpu_probe
from edge.model.runtime import load_backend
from fakelib import build_fake_libedgetpu, compiler

# -- the probe (edge.model.edgetpu_probe), with fake runtimes and the real models ------------------------------------
needs_cc = pytest.mark.skipif(compiler() is None, reason="needs a C compiler (cc)")


@pytest.fixture
def edgetpu_model(assets):
    return assets / "models" / "coral" / "yamnet_spectra_in_edgetpu.tflite"


@needs_cc
@pytest.mark.parametrize("variant,verdict,detail", [("segv", "crashed", "SIGSEGV"),
                                                    ("hang", "hung", "no answer within 2 s"),
                                                    ("null", "failed", "Failed to load delegate"),
                                                    ("known-bad", "known-bad", "inferred")])
def test_probe_verdicts(variant, verdict, detail, tmp_path, monkeypatch, edgetpu_model):
    lib = str(build_fake_libedgetpu(variant, tmp_path / "lib") / "libedgetpu.so.1")
    monkeypatch.setenv(edgetpu_probe.ENV_TIMEOUT, "2")
    backend = load_backend()
    spawned = []
    real = edgetpu_probe.run_child
    monkeypatch.setattr(edgetpu_probe, "run_child", lambda *a: spawned.append(a) or real(*a))
    first = edgetpu_probe.check(backend, edgetpu_model, "usb:0", lib)
    assert (first.verdict, first.cached) == (verdict, False) and detail in first.detail, first
    assert first.build.label.startswith("BuildLabel(") and str(backend) in first.reason()
    second = edgetpu_probe.check(backend, edgetpu_model, "usb:0", lib)
    cached = variant != "null"  # a failure (no delegate: often an unplugged TPU) is asked again next time
    assert second.verdict == verdict and second.cached == cached
    assert len(spawned) == (1 if cached else 2)
    assert ("(cached verdict)" in second.reason()) == cached
    # a fresh probe (what the daemon's run-time retry asks for) never takes the cache
    edgetpu_probe.check(backend, edgetpu_model, "usb:0", lib, fresh=True)
    assert len(spawned) == (2 if cached else 3)


@needs_cc
def test_the_cache_is_per_model_and_library(tmp_path, monkeypatch, assets, edgetpu_model):
    lib = str(build_fake_libedgetpu("segv", tmp_path / "lib") / "libedgetpu.so.1")
    backend = load_backend()
    key = edgetpu_probe.cache_key(backend, lib, edgetpu_model, "usb:0")
    other_model = assets / "models" / "coral" / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
    assert key != edgetpu_probe.cache_key(backend, lib, other_model, "usb:0")
    assert key != edgetpu_probe.cache_key(backend, lib, edgetpu_model, "pci:0")
    edgetpu_probe.check(backend, edgetpu_model, "usb:0", lib)
    stored = json.loads((edgetpu_probe.cache_dir() / "probe" / f"{key}.json").read_text())
    assert stored["verdict"] == "crashed" and stored["backend"] == str(backend)
    assert Path(edgetpu_probe.cache_dir()).is_relative_to(Path(os.environ["EDGE_AUDIO_HOME"]))


def test_cache_folder_follows_xdg_without_edge_audio_home(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGE_AUDIO_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert edgetpu_probe.cache_dir() == tmp_path / "edge-audio"


def test_a_bad_probe_timeout_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(edgetpu_probe.ENV_TIMEOUT, "soon")
    with pytest.raises(DelegateError, match="EDGE_AUDIO_PROBE_TIMEOUT='soon' is not a number"):
        edgetpu_probe.timeout_seconds()


@needs_cc
def test_the_daemons_tpu_retry_probes_afresh(tmp_path, monkeypatch, assets):
    """A cached verdict serves a restart; the run-time retry (the TPU failed, is it back?) asks a child again."""
    from edge.app.startup import build
    from edge.config import parse_config
    from fakelib import fake_tpu_env
    from tools.rig.daemon import daemon_config_text
    for name, value in fake_tpu_env("segv", tmp_path / "fake").items():
        monkeypatch.setenv(name, value)
    spawned = []
    real = edgetpu_probe.run_child
    monkeypatch.setattr(edgetpu_probe, "run_child", lambda *a: spawned.append(a) or real(*a))
    cfg = parse_config(daemon_config_text(
        audio={"source": "wav", "file": assets / "audio" / "dog_975ms.wav"},
        model={"path": assets / "models" / "coral" / "yamnet_spectra_in_edgetpu.tflite",
               "labels": assets / "models" / "yamnet_class_map.csv"},
        mqtt={"enabled": False}))
    daemon = build(cfg)
    assert daemon.classifier.decision.delegate == "cpu" and "crashed" in daemon.classifier.decision.reason
    assert len(spawned) == 1
    assert build(cfg).classifier.decision.reason.count("(cached verdict)") == 1 and len(spawned) == 1  # restart
    retried = daemon.reopen_classifier(None)
    assert len(spawned) == 2 and retried.decision.delegate == "cpu" and "probed in" in retried.decision.reason
    assert daemon.reopen_classifier("cpu").decision.delegate == "cpu" and len(spawned) == 2
