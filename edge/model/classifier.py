"""A YAMNet-style classifier: model (Edge TPU or CPU) + front end + labels, with input written in place.

    prepare(window, start)  front end (patch models) and quantization, straight into the input tensor
    invoke()                the interpreter
    read_scores()           dequantized scores into a preallocated float32 array
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..core.errors import InputError, ModelError
from ..core.frontend import FrontEndParams, LogMelFrontEnd
from .bundle import resolve_model
from .delegate import Decision, DelegatePolicy, decide
from .labels import load_labels
from .runtime import Backend, load_backend
from .tflite_file import ModelIO, TensorInfo, read_model_io


def input_kind_of(tensor: TensorInfo, params: FrontEndParams, where: Path) -> str:
    """'waveform' for [N] / [1, N] with N = 15600; 'logmel_patch' for [1, 96, 64] (optionally [.., 1])."""
    shape = [d for d in tensor.shape]
    squeezed = [d for d in shape if d != 1] if len(shape) > 1 else shape
    if squeezed == [params.window_samples]:
        return "waveform"
    if squeezed == [params.patch_frames, params.mel_bands]:
        return "logmel_patch"
    raise ModelError(f"{where}: unsupported input shape {shape} ({tensor.dtype}); expected a YAMNet waveform "
                     f"[{params.window_samples}] or log-mel patch [1, {params.patch_frames}, {params.mel_bands}] model")


class Classifier:
    """Keeps what the per-window path uses (the interpreter, its tensor accessors, the front end, the scores) and
    the labels; nothing read from the model file stays."""

    def __init__(self, interpreter, info: ModelIO, labels: list[str], decision: Decision, backend: Backend,
                 frontend: FrontEndParams = FrontEndParams(), model_name: str = "", threads: int = 1,
                 thresholds: dict | None = None, clip_pool: str | None = None, model_digest: str = ""):
        self.interpreter = interpreter
        self.model_digest = model_digest  # sha256 naming the model (a site calibration records it)
        self.thresholds = dict(thresholds or {})  # the bundle's per-label start thresholds, if it has them
        self.clip_pool = clip_pool  # the bundle's measured clip pooling, if it has one
        self.decision = decision
        self.backend = backend
        self.model_name = model_name or info.path.stem
        self.threads = threads
        self.params = frontend
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        self.input_kind = input_kind_of(info.inputs[0], frontend, info.path)
        n_classes = int(np.prod(out["shape"]))
        if len(labels) != n_classes:
            raise InputError(f"label file has {len(labels)} labels but the model outputs {n_classes} classes")
        self.labels = labels
        self.frontend = LogMelFrontEnd(frontend) if self.input_kind == "logmel_patch" else None
        self._input = interpreter.tensor(inp["index"])  # returns a view of the input tensor when called
        self._output = interpreter.tensor(out["index"])
        self._in_dtype = np.dtype(inp["dtype"])
        self._in_q = inp["quantization"]
        self._out_q = out["quantization"]
        self._in_size = int(np.prod(inp["shape"]))
        self._qbuf = np.zeros(self._in_size, np.float32) if self._in_dtype != np.float32 else None
        if self._qbuf is not None and not self._in_q[0]:
            raise ModelError(f"{info.path}: {self._in_dtype} input without quantization parameters")
        self.scores = np.zeros(n_classes, np.float32)

    @classmethod
    def open(cls, model: str | Path | None = None, labels: str | Path | None = None, delegate: str = "auto",
             threads: int = 1, backend: str | Backend | None = None, load_tpu=None,
             fresh_probe: bool = False) -> "Classifier":
        """Resolve the model, apply the delegate policy, load the interpreter. Raises InputError subclasses.
        `fresh_probe` asks the Edge TPU probe again instead of taking its cached verdict."""
        policy = DelegatePolicy.parse(delegate)  # argument errors first, before touching files
        source = resolve_model(model, labels)
        label_list = load_labels(source.labels)
        thresholds = source.bundle.thresholds if source.bundle is not None else {}
        unknown = sorted(set(thresholds) - set(label_list))
        if unknown:
            raise ModelError(f"{source.bundle.path}: the manifest's thresholds name labels the model does not have: "
                             f"{', '.join(map(repr, unknown[:3]))}")
        be = backend if isinstance(backend, Backend) else load_backend(backend)
        kwargs = {"load_tpu": load_tpu} if load_tpu else {}
        decision = decide(policy, source.models, be, fresh_probe=fresh_probe, **kwargs)
        info = read_model_io(decision.model)
        input_kind_of(info.inputs[0], source.frontend, decision.model)  # reject before loading
        interpreter = _load_interpreter(be, decision, threads)
        return cls(interpreter, info, label_list, decision, be, source.frontend, source.name, threads, thresholds,
                   source.bundle.clip_pool if source.bundle is not None else None, source.digest)

    @classmethod
    def from_config(cls, m: ModelConfig, delegate: str | None = None, fresh_probe: bool = False) -> "Classifier":
        """The classifier a [model] section describes (`delegate` overrides its policy: the CPU fallback)."""
        return cls.open(m.path or None, m.labels or None, delegate or m.delegate, m.threads, m.backend or None,
                        fresh_probe=fresh_probe)

    # -- the hot path: no allocation of arrays -------------------------------------------------------------------
    def prepare(self, window: np.ndarray, start_sample: int | None = None, frontend=None) -> None:
        """Write one window (float32, 15600 samples) into the input tensor, through the front end if needed:
        `frontend` (one stream's own, from new_frontend()), else the classifier's."""
        if self.frontend is None:
            self.write_input(window)
        else:
            self.write_input((frontend or self.frontend).compute(window, start_sample))

    def new_frontend(self):
        """A front end for one more stream (its own patches, the classifier's scratch), or None for a waveform
        model."""
        return self.frontend.fork() if self.frontend is not None else None

    def write_input(self, src: np.ndarray) -> None:
        """Write model-ready float32 input (a waveform or a log-mel patch), quantizing if the model needs it."""
        view = self._input().reshape(-1)
        flat = src.reshape(-1)
        if self._qbuf is None:
            np.copyto(view, flat)
            return
        scale, zero = self._in_q
        q = self._qbuf
        np.divide(flat, scale, out=q)
        np.rint(q, out=q)
        np.add(q, zero, out=q)
        info = np.iinfo(self._in_dtype)
        np.clip(q, info.min, info.max, out=q)
        np.copyto(view, q, casting="unsafe")

    def invoke(self) -> None:
        self.interpreter.invoke()

    def read_scores(self) -> np.ndarray:
        view = self._output().reshape(-1)
        scale, zero = self._out_q
        np.copyto(self.scores, view, casting="unsafe")
        if view.dtype != np.float32 and scale:
            np.subtract(self.scores, zero, out=self.scores)  # in float: int8/uint8 arithmetic would wrap
            np.multiply(self.scores, scale, out=self.scores)
        return self.scores

    def classify(self, window: np.ndarray, start_sample: int | None = None, frontend=None) -> np.ndarray:
        """Scores for one window (a preallocated array, overwritten by the next call); `frontend` as in
        prepare()."""
        self.prepare(window, start_sample, frontend)
        self.invoke()
        return self.read_scores()

    @property
    def grid_samples(self) -> int:
        """Windows for this model start on multiples of this (WindowLoop's grid): the STFT hop for a log-mel
        model, so overlapping windows share whole frames at any hop; 1 for a waveform model."""
        return self.params.stft_hop_samples if self.frontend is not None else 1

    def top(self, scores: np.ndarray, k: int) -> list[dict]:
        order = np.argsort(-scores, kind="stable")[:k]
        return [{"index": int(i), "label": self.labels[i], "score": round(float(scores[i]), 6)} for i in order]

    def describe(self) -> str:
        d = self.decision
        return (f"model {d.model.name} ({self.input_kind}) on {d.delegate}"
                + (f" x{self.threads} threads" if d.delegate == "cpu" else "")
                + f" via {self.backend}: {d.reason}")


def _load_interpreter(backend: Backend, decision: Decision, threads: int):
    kwargs = {"model_path": str(decision.model)}
    if decision.tpu_delegate is not None:
        kwargs["experimental_delegates"] = [decision.tpu_delegate]
    else:
        kwargs["num_threads"] = max(1, int(threads))
    try:
        interpreter = backend.Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"{decision.model}: the {backend.name} interpreter cannot load it ({first})") from exc
    return interpreter
