"""The delegate policy: one place decides Edge TPU or CPU, and says why.

    auto                      Edge TPU if there is an Edge TPU model, a TPU and a delegate that loads; else CPU
    edgetpu[:usb[:N]|:pci[:N]]  the user asked for the TPU: fail with a clear line if that cannot be done
    cpu                       never touch the TPU

decide() makes the choice when a model is opened; DelegateSupervisor keeps it true while audio flows: an Edge
TPU that fails mid-stream hands the stream to the CPU model, and the TPU is tried again later.

The Edge TPU delegate is only loaded in this process after a probe passed (edge/model/edgetpu_probe.py: a child process
loads it and runs one invoke; a mismatched runtime crashes the child, not us), and never when the compatibility
table (edge/model/compat.py) marks the runtime build with this backend as known-bad.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import edgetpu
from ..core.errors import DelegateError, ModelError
from .bundle import ModelPair

MODES = ("auto", "cpu", "edgetpu")
TPU_RETRY_SECONDS = 300.0  # after falling back to the CPU, try the Edge TPU again this often
log = logging.getLogger("edge.delegate")


@dataclass(frozen=True)
class DelegatePolicy:
    mode: str = "auto"
    device: str = ""  # for edgetpu: '', 'usb', 'usb:0', 'pci:0'

    @classmethod
    def parse(cls, spec: str) -> "DelegatePolicy":
        spec = (spec or "auto").strip()
        mode, _, device = spec.partition(":")
        if mode not in MODES or (device and mode != "edgetpu"):
            raise DelegateError(f"bad delegate {spec!r}: use auto, cpu, edgetpu, edgetpu:usb[:N] or edgetpu:pci[:N]")
        edgetpu.parse_device(device)
        return cls(mode, device)

    def __str__(self) -> str:
        return f"{self.mode}:{self.device}" if self.device else self.mode


@dataclass
class Decision:
    delegate: str  # "edgetpu" or "cpu"
    model: Path
    reason: str
    device: str = ""
    tpu_delegate: Any = None


# (backend, device, Edge TPU model, fresh probe) -> (delegate, why it is trusted)
TpuLoader = Callable[[Any, str, Path, bool], tuple[Any, str]]
NO_RUNTIME = ("install a matched runtime pair: 'edge-audio doctor' prints the line for this system "
              "(see firmware_configs/README.md)")


def load_checked_delegate(backend, device: str, model: Path, fresh: bool = False) -> tuple[Any, str]:
    """The Edge TPU delegate, loaded in this process only once a probe of `model` passed (a cached verdict
    unless `fresh`). Raises DelegateError with one line naming the cause and the fix."""
    library = edgetpu.locate_library()
    if library is None:
        raise DelegateError(f"Edge TPU runtime library {edgetpu.library_name()} not found; {NO_RUNTIME}")
    edgetpu.find_tpu(device)
    from . import edgetpu_probe  # only when an Edge TPU is there to probe: a CPU-only device never imports it
    result = edgetpu_probe.check(backend, model, device, library, fresh)
    if not result.ok:
        raise DelegateError(result.reason())
    return edgetpu.load_delegate(backend, device, library), result.reason()


def decide(policy: DelegatePolicy, models: ModelPair, backend, load_tpu: TpuLoader = load_checked_delegate,
           fresh_probe: bool = False) -> Decision:
    """Apply the policy. Raises DelegateError/ModelError (exit 2) when the request cannot be met."""
    if policy.mode == "cpu":
        return Decision("cpu", _cpu_model(models, "--delegate cpu was asked for"), "CPU requested (--delegate cpu)")
    if models.edgetpu is None:
        if policy.mode == "edgetpu":
            raise DelegateError(f"{models.cpu}: not compiled for the Edge TPU and no *_edgetpu.tflite beside it; "
                                "compile it (python -m tools compile) or use --delegate cpu")
        return Decision("cpu", _cpu_model(models, ""), "the model has no Edge TPU build")
    try:
        delegate, trusted = load_tpu(backend, policy.device, models.edgetpu, fresh_probe)
    except DelegateError as exc:
        if policy.mode == "edgetpu":
            raise
        why = str(exc).split(";")[0]  # the cause; the fix is for `--delegate edgetpu` and `doctor`
        model = _cpu_model(models, why)
        return Decision("cpu", model, f"{why}; using the CPU twin {model.name}")
    reason = f"Edge TPU {policy.device or '(first found)'} delegate loaded: {trusted}"
    return Decision("edgetpu", models.edgetpu, reason, policy.device, delegate)


def _cpu_model(models: ModelPair, why: str) -> Path:
    if models.cpu is not None:
        return models.cpu
    twin = models.edgetpu.with_name(models.edgetpu.name.replace("_edgetpu.tflite", ".tflite"))
    prefix = f"{why}, and " if why else ""
    raise ModelError(f"{prefix}{models.edgetpu.name} is compiled for the Edge TPU and has no CPU twin "
                     f"(expected {twin.name} beside it, or a bundle with a CPU model); "
                     "attach a TPU or use a model bundle from 'make model'")


class DelegateSupervisor:
    """The run-time half of the policy. `classify()` stands where the classifier's does.

    If an Edge TPU invoke fails (a USB Coral unplugged), the same window is classified again on the CPU model
    and the stream goes on there; every `retry_s` the configured policy is applied again, and when it yields
    the Edge TPU the stream moves back. `reopen(delegate)` opens the model with a delegate spec; `reopen(None)`
    applies the configured policy again, with a fresh probe of the TPU (never a cached verdict: the TPU just
    failed), in a background thread so the audio loop does not wait for it. `on_switch(old, new, why)` tells
    the owner (metrics, event fields)."""

    def __init__(self, classifier, reopen: Callable[[str | None], Any],
                 on_switch: Callable[[Any, Any, str], None] | None = None, retry_s: float = TPU_RETRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.classifier = classifier
        self._reopen = reopen
        self._on_switch = on_switch
        self._retry_s = retry_s
        self._clock = clock
        self._retry_at: float | None = None
        self._retrying: threading.Thread | None = None
        self._candidate: Any = None
        self.switches = 0

    def classify(self, window, start: int | None = None, frontend=None):
        if self._retry_at is not None:
            self._tick_retry()
        try:
            return self.classifier.classify(window, start, frontend)
        except (RuntimeError, ValueError) as exc:
            if self.classifier.decision.delegate != "edgetpu":
                raise
            first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            self._switch(self._reopen("cpu"), f"Edge TPU invoke failed ({first}); on the CPU model until it is back")
            self._retry_at = self._clock() + self._retry_s
            return self.classifier.classify(window, start, frontend)

    def _tick_retry(self) -> None:
        if self._retrying is not None:
            if self._retrying.is_alive():
                return
            self._retrying = None
            candidate, self._candidate = self._candidate, None
            if candidate is not None and candidate.decision.delegate == "edgetpu":
                self._switch(candidate, f"Edge TPU is back ({candidate.decision.reason})")
                self._retry_at = None
            return
        if self._clock() >= self._retry_at:
            self._retry_at = self._clock() + self._retry_s
            self._retrying = threading.Thread(target=self._try_tpu, name="tpu-retry", daemon=True)
            self._retrying.start()

    def _try_tpu(self) -> None:
        try:
            self._candidate = self._reopen(None)
        except Exception as exc:  # still gone: stay on the CPU
            log.info("Edge TPU still unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)

    def wait_retry(self, timeout_s: float | None = None) -> None:
        """Wait for a retry under way to finish (at most timeout_s)."""
        if self._retrying is not None:
            self._retrying.join(timeout_s)

    def _switch(self, classifier, why: str) -> None:
        old = self.classifier
        log.warning("delegate: %s -> %s: %s", old.decision.delegate, classifier.decision.delegate, why)
        classifier.decision.reason = why
        self.classifier = classifier
        self.switches += 1
        if self._on_switch is not None:
            self._on_switch(old, classifier, why)
