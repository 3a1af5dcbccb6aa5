"""The delegate policy with injected TPU loaders (wiring), the run-time supervisor, and the real Edge TPU loader
failing here."""

import threading
from pathlib import Path

import pytest

from edge.model import edgetpu
from edge.model.delegate import (Decision, DelegatePolicy, DelegateSupervisor, ModelPair, decide,
                                 load_checked_delegate)
from edge.core.errors import DelegateError, ModelError
from edge.model.runtime import load_backend


@pytest.mark.parametrize("spec,mode,device", [("auto", "auto", ""), ("cpu", "cpu", ""), ("edgetpu", "edgetpu", ""),
                                              ("edgetpu:usb", "edgetpu", "usb"), ("edgetpu:usb:1", "edgetpu", "usb:1"),
                                              ("edgetpu:pci:0", "edgetpu", "pci:0")])
def test_policy_grammar(spec, mode, device):
    p = DelegatePolicy.parse(spec)
    assert (p.mode, p.device) == (mode, device)


@pytest.mark.parametrize("spec", ["gpu", "cpu:usb", "edgetpu:usb:x", "edgetpu:sata", "edgetpu:usb:0:1"])
def test_bad_policies(spec):
    with pytest.raises(DelegateError):
        DelegatePolicy.parse(spec)


PAIR = ModelPair(Path("m_edgetpu.tflite"), Path("m.tflite"))


def _tpu_ok(backend, device, model, fresh):
    return f"delegate for {device or 'first'}", "a probe passed"


def _tpu_missing(backend, device, model, fresh):
    raise DelegateError("no USB or PCIe Edge TPU found; check the cable")


def test_auto_takes_the_tpu_when_it_loads():
    d = decide(DelegatePolicy.parse("auto"), PAIR, None, load_tpu=_tpu_ok)
    assert d.delegate == "edgetpu" and d.model == PAIR.edgetpu and d.tpu_delegate == "delegate for first"
    assert d.reason.endswith("delegate loaded: a probe passed")


def test_the_loader_is_told_the_edgetpu_model_and_whether_to_probe_afresh():
    seen = []
    decide(DelegatePolicy.parse("edgetpu:usb:0"), PAIR, None, fresh_probe=True,
           load_tpu=lambda *a: seen.append(a) or _tpu_ok(*a))
    assert seen == [(None, "usb:0", PAIR.edgetpu, True)]


def test_auto_falls_back_to_the_twin_and_says_why():
    d = decide(DelegatePolicy.parse("auto"), PAIR, None, load_tpu=_tpu_missing)
    assert d.delegate == "cpu" and d.model == PAIR.cpu
    assert "no USB or PCIe Edge TPU found" in d.reason and "m.tflite" in d.reason


def test_explicit_edgetpu_request_fails_clearly():
    with pytest.raises(DelegateError, match="no USB or PCIe Edge TPU"):
        decide(DelegatePolicy.parse("edgetpu:usb:0"), PAIR, None, load_tpu=_tpu_missing)


def test_cpu_never_touches_the_tpu():
    def boom(*_):
        raise AssertionError("the TPU loader was called")
    d = decide(DelegatePolicy.parse("cpu"), PAIR, None, load_tpu=boom)
    assert d.model == PAIR.cpu


def test_edgetpu_only_model_without_tpu_is_an_error():
    with pytest.raises(ModelError, match="no CPU twin"):
        decide(DelegatePolicy.parse("auto"), ModelPair(Path("kws_edgetpu.tflite"), None), None, load_tpu=_tpu_missing)


def test_real_loader_fails_with_an_install_hint_when_libedgetpu_is_absent():
    if edgetpu.locate_library():
        pytest.skip("libedgetpu is installed on this machine")
    with pytest.raises(DelegateError, match="libedgetpu.so.1 not found; install a matched runtime pair"):
        load_checked_delegate(load_backend(), "usb:0", PAIR.edgetpu)


def test_usb_and_pcie_tpus_are_listed_from_sysfs_and_dev(tmp_path):
    usb = tmp_path / "sys" / "bus" / "usb" / "devices"
    for name, ids in {"2-1": ("18d1", "9302"), "1-1": ("1a6e", "089a"), "1-2": ("046d", "0825")}.items():
        (usb / name).mkdir(parents=True)
        (usb / name / "idVendor").write_text(ids[0] + "\n")
        (usb / name / "idProduct").write_text(ids[1] + "\n")
    (usb / "2-1" / "speed").write_text("5000\n")
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "apex_0").write_text("")
    found = edgetpu.list_edge_tpus(str(tmp_path / "sys"), str(dev))
    assert [(t.type, Path(t.path).name) for t in found] == [("usb", "1-1"), ("usb", "2-1"), ("pci", "apex_0")]
    assert "5000 Mb/s" in found[1].detail


class _Model:
    """Stands where a Classifier does for the supervisor: a decision and a classify() (raising, if unplugged)."""

    def __init__(self, delegate, fail=False):
        self.decision = Decision(delegate, Path(f"m_{delegate}.tflite"), f"{delegate} model")
        self.fail = fail

    def classify(self, window, start=None, frontend=None):
        if self.fail:
            raise RuntimeError("Edge TPU: failed to invoke (USB transfer error)")
        return self.decision.delegate


def test_the_tpu_retry_runs_beside_the_audio_loop_and_moves_back_when_the_tpu_is_back():
    release = threading.Event()
    calls = []

    def reopen(delegate):
        calls.append(delegate)
        if delegate is None:  # the retry: a fresh probe takes a while
            assert release.wait(5)
            return _Model("edgetpu")
        return _Model("cpu")

    supervisor = DelegateSupervisor(_Model("edgetpu", fail=True), reopen, retry_s=0.0)
    assert supervisor.classify(None) == "cpu" and calls == ["cpu"]  # the failed window, again on the CPU
    for _ in range(5):  # the retry started and waits on its probe: the windows go on meanwhile, on the CPU
        assert supervisor.classify(None) == "cpu"
    assert calls == ["cpu", None]
    release.set()
    supervisor.wait_retry(5)
    assert supervisor.classify(None) == "edgetpu" and supervisor.switches == 2
    assert supervisor.classifier.decision.reason.startswith("Edge TPU is back")
