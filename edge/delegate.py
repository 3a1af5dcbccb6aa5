"""The delegate policy: one function decides Edge TPU or CPU, and says why.

    auto                      Edge TPU if there is an Edge TPU model, a TPU and a delegate that loads; else CPU
    edgetpu[:usb[:N]|:pci[:N]]  the user asked for the TPU: fail with a clear line if that cannot be done
    cpu                       never touch the TPU
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import edgetpu
from .errors import DelegateError, ModelError
from .tflite_file import read_model_info

MODES = ("auto", "cpu", "edgetpu")


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


@dataclass(frozen=True)
class ModelPair:
    """The models one can choose between: an Edge TPU build and its CPU twin (either may be absent)."""

    edgetpu: Path | None
    cpu: Path | None

    @classmethod
    def from_file(cls, path: Path) -> "ModelPair":
        """A plain .tflite: find its twin by name (x.tflite <-> x_edgetpu.tflite) in the same folder."""
        info = read_model_info(path)  # validates the file before anything else looks at it
        if info.is_edgetpu:
            twin = path.with_name(path.name.replace("_edgetpu.tflite", ".tflite"))
            return cls(path, twin if twin != path and twin.is_file() else None)
        twin = path.with_name(path.stem + "_edgetpu.tflite")
        return cls(twin if twin.is_file() else None, path)


@dataclass
class Decision:
    delegate: str  # "edgetpu" or "cpu"
    model: Path
    reason: str
    device: str = ""
    tpu_delegate: Any = None


TpuLoader = Callable[[Any, str], Any]


def decide(policy: DelegatePolicy, models: ModelPair, backend, load_tpu: TpuLoader = edgetpu.load_delegate) -> Decision:
    """Apply the policy. Raises DelegateError/ModelError (exit 2) when the request cannot be met."""
    if policy.mode == "cpu":
        return Decision("cpu", _cpu_model(models, "--delegate cpu was asked for"), "CPU requested (--delegate cpu)")
    if models.edgetpu is None:
        if policy.mode == "edgetpu":
            raise DelegateError(f"{models.cpu}: not compiled for the Edge TPU and no *_edgetpu.tflite beside it; "
                                "compile it (python -m tools compile) or use --delegate cpu")
        return Decision("cpu", _cpu_model(models, ""), "the model has no Edge TPU build")
    try:
        delegate = load_tpu(backend, policy.device)
    except DelegateError as exc:
        if policy.mode == "edgetpu":
            raise
        why = str(exc).split(";")[0]
        model = _cpu_model(models, why)
        return Decision("cpu", model, f"{why}; using the CPU twin {model.name}")
    reason = f"Edge TPU {policy.device or '(first found)'} delegate loaded"
    return Decision("edgetpu", models.edgetpu, reason, policy.device, delegate)


def _cpu_model(models: ModelPair, why: str) -> Path:
    if models.cpu is not None:
        return models.cpu
    twin = models.edgetpu.with_name(models.edgetpu.name.replace("_edgetpu.tflite", ".tflite"))
    prefix = f"{why}, and " if why else ""
    raise ModelError(f"{prefix}{models.edgetpu.name} is compiled for the Edge TPU and has no CPU twin "
                     f"(expected {twin.name} beside it, or a bundle with a CPU model); "
                     "attach a TPU or use a model bundle from 'make model'")
