"""TFLite interpreter backends: tflite_runtime, ai_edge_litert (LiteRT) or full TensorFlow, whichever is
installed, in a configurable order of preference. Imported lazily: nothing is loaded at import time.

Every backend's runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on stderr from C++ when
its first interpreter is made (LiteRT while constructing it, TensorFlow in allocate_tensors), whatever the log
level variables say. A backend's Interpreter leaves that banner out; any other line the runtime prints then
reaches stderr as usual, and --verbose (or debug logging) shows the banner too."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

from ..core.console import native_stderr_filtered
from ..core.errors import InputError

DEFAULT_ORDER = ("ai_edge_litert", "tflite_runtime", "tensorflow")
ENV_ORDER = "EDGE_AUDIO_BACKENDS"
BANNERS = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)  # what the runtimes say when all is well


@dataclass(frozen=True)
class Backend:
    name: str
    version: str
    Interpreter: Callable[..., Any]
    load_delegate: Callable[..., Any]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def without_banners(interpreter_class):
    """The backend's Interpreter class, with the runtime's start-up banners left out of stderr (see above)."""
    class Interpreter(interpreter_class):
        def __init__(self, *args, **kwargs):
            with native_stderr_filtered(BANNERS):
                super().__init__(*args, **kwargs)

        def allocate_tensors(self):
            with native_stderr_filtered(BANNERS):
                return super().allocate_tensors()

    return Interpreter


def _import(name: str) -> Backend:
    if name == "ai_edge_litert":
        mod = importlib.import_module("ai_edge_litert.interpreter")
        version = getattr(importlib.import_module("ai_edge_litert"), "__version__", None)
        if version is None:  # the package's own attribute spares the device importlib.metadata (40 modules)
            from importlib.metadata import version as dist_version
            version = dist_version("ai-edge-litert")
        return Backend(name, version, without_banners(mod.Interpreter), mod.load_delegate)
    if name == "tflite_runtime":
        mod = importlib.import_module("tflite_runtime.interpreter")
        top = importlib.import_module("tflite_runtime")
        return Backend(name, getattr(top, "__version__", "?"), without_banners(mod.Interpreter), mod.load_delegate)
    if name == "tensorflow":
        tf = importlib.import_module("tensorflow")
        return Backend(name, tf.__version__, without_banners(tf.lite.Interpreter), tf.lite.experimental.load_delegate)
    raise InputError(f"unknown backend {name!r}; choose from {', '.join(DEFAULT_ORDER)}")


def parse_order(spec: str | None) -> tuple[str, ...]:
    if not spec:
        spec = os.environ.get(ENV_ORDER, "")
    names = tuple(s.strip() for s in spec.split(",") if s.strip()) or DEFAULT_ORDER
    for n in names:
        if n not in DEFAULT_ORDER:
            raise InputError(f"unknown backend {n!r}; choose from {', '.join(DEFAULT_ORDER)}")
    return names


def load_backend(order: str | tuple[str, ...] | None = None) -> Backend:
    """The first importable backend in `order` (a comma list, or EDGE_AUDIO_BACKENDS, or the default)."""
    names = order if isinstance(order, tuple) else parse_order(order)
    failures = []
    for name in names:
        try:
            return _import(name)
        except ImportError as exc:
            failures.append(f"{name} ({exc.__class__.__name__}: {exc})")
        except Exception as exc:  # a broken install (e.g. tflite_runtime with NumPy 2) is not "absent"
            failures.append(f"{name} (broken: {exc})")
    raise InputError("no TFLite runtime is usable: tried " + "; ".join(failures) +
                     ". Install one: pip install 'edge-audio[litert]'")


DISTRIBUTIONS = {"ai_edge_litert": ("ai-edge-litert",), "tflite_runtime": ("tflite-runtime",),
                 "tensorflow": ("tensorflow", "tensorflow-cpu")}


def available_backends() -> list[tuple[str, str]]:
    """(name, installed version or 'not installed') for every known backend, for `doctor`. Reads package
    metadata only: importing TensorFlow to print its version would take seconds."""
    from importlib.metadata import PackageNotFoundError, version
    out = []
    for name in DEFAULT_ORDER:
        found = "not installed"
        for dist in DISTRIBUTIONS[name]:
            try:
                found = version(dist)
                break
            except PackageNotFoundError:
                continue
        out.append((name, found))
    return out
