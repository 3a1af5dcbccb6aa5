"""Model bundles: a folder with manifest.json naming the models, labels and front end, with sha256 pins.

    manifest.json        {"schema": 1, "name", "input_kind", "frontend", "models": {"edgetpu"?, "cpu"},
                          "labels", "quantization", "compiler", "source", "files": {name: sha256},
                          "thresholds"?: {label: start threshold}, "selftest"?: {"clip", "expected"},
                          "outputs"?: [{"name", "labels"}, ...], "clip_pool"?: "mean" | "max"}
    <cpu model>.tflite   always present: the fallback
    <name>_edgetpu.tflite  optional
    labels file          for the model's first output (the one the runtime reads)
    self-test clip       optional: a WAV the bundle's own model must classify as "expected"

A bundle trained for its own sounds carries the start threshold of each label, chosen on held-out recordings;
the daemon uses them for labels its configuration does not set. "outputs" describes a model with more than one
output (the first is the one classified; the others, e.g. the 521 AudioSet scores, keep their own labels).
"clip_pool" is how `classify` summarizes a file with this model unless told otherwise (measured when trained).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..core.clip import CLIP_POOLS
from ..core.errors import InputError, ModelError
from ..core.files import open_regular, read_text, sha256
from ..core.frontend import FrontEndParams
from ..core.paths import data_home
from .labels import find_labels_near
from .tflite_file import read_model_io

MANIFEST = "manifest.json"
SCHEMA = 1
INPUT_KINDS = ("waveform", "logmel_patch")


def sha256_file(path: Path) -> str:
    digest = sha256()
    with open(open_regular(path, "model bundle file", ModelError, limit=None), "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):  # small reads: no large block to free at start-up
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SelfTest:
    clip: Path  # a WAV file inside the bundle
    expected: str  # the label the bundle's model gives it


@dataclass
class Bundle:
    path: Path
    name: str
    input_kind: str
    cpu_model: Path
    labels: Path
    edgetpu_model: Path | None = None
    frontend: FrontEndParams = field(default_factory=FrontEndParams)
    manifest: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)  # {label: start threshold} tuned for this model
    selftest: SelfTest | None = None
    clip_pool: str | None = None  # how `classify` pools windows for this model by default (edge.core.clip)


def _thresholds(value, where: Path) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0
            for k, v in value.items()):
        raise ModelError(f"{where}: 'thresholds' must map label names to numbers between 0 and 1")
    return {k: float(v) for k, v in value.items()}


def _selftest(value, path: Path, where: Path) -> SelfTest | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("clip"), str) or \
            not isinstance(value.get("expected"), str) or not value["clip"] or not value["expected"]:
        raise ModelError(f"{where}: 'selftest' must be {{\"clip\": \"<file in the bundle>\", \"expected\": "
                         "\"<label>\"}")
    return SelfTest(path / value["clip"], value["expected"])


def _clip_pool(value, where: Path) -> str | None:
    if value is not None and value not in CLIP_POOLS:
        raise ModelError(f"{where}: 'clip_pool' must be one of {', '.join(CLIP_POOLS)}")
    return value


def bundle_files(manifest: dict) -> list[str]:
    """Every file a manifest names (models, labels of each output, the self-test clip): what 'files' pins."""
    models = manifest.get("models") or {}
    names = [models.get("cpu"), models.get("edgetpu"), manifest.get("labels")]
    names += [o.get("labels") for o in manifest.get("outputs") or [] if isinstance(o, dict)]
    names.append((manifest.get("selftest") or {}).get("clip"))
    return list(dict.fromkeys(n for n in names if n))


def is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and check a bundle. Every file named in the manifest must exist and match its sha256."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise ModelError(f"{path}: not a model bundle (no {MANIFEST}); run 'make model' to install one")
    try:
        manifest = json.loads(read_text(manifest_path, "manifest", ModelError))
    except (RecursionError, ValueError) as exc:
        raise ModelError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{manifest_path}: unreadable manifest (a JSON object was expected)")
    try:
        if manifest.get("schema") != SCHEMA:
            raise ModelError(f"{manifest_path}: manifest schema {manifest.get('schema')!r} is not {SCHEMA}")
        models = manifest["models"]
        kind = manifest["input_kind"]
        if kind not in INPUT_KINDS:
            raise ModelError(f"{manifest_path}: input_kind {kind!r} is not one of {', '.join(INPUT_KINDS)}")
        files = manifest["files"]
        frontend = FrontEndParams.from_dict(manifest.get("frontend") or {})
        bundle = Bundle(path=path, name=manifest.get("name", path.name), input_kind=kind,
                        cpu_model=path / models["cpu"], labels=path / manifest["labels"],
                        edgetpu_model=path / models["edgetpu"] if models.get("edgetpu") else None,
                        frontend=frontend, manifest=manifest,
                        thresholds=_thresholds(manifest.get("thresholds"), manifest_path),
                        selftest=_selftest(manifest.get("selftest"), path, manifest_path),
                        clip_pool=_clip_pool(manifest.get("clip_pool"), manifest_path))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{manifest_path}: malformed manifest ({exc.__class__.__name__}: {exc})") from None
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise ModelError(f"{file}: missing from the bundle; reinstall it ('make model')")
        if verify and sha256_file(file) != expected:
            raise ModelError(f"{file}: sha256 does not match the manifest (corrupt or modified); reinstall it")
    for required in bundle_files(manifest):
        if required not in files:
            raise ModelError(f"{manifest_path}: {required} has no sha256 in 'files'")
    return bundle


def write_manifest(path: Path, manifest: dict) -> Path:
    """Fill in 'files' with the sha256 of every file the manifest names, and write manifest.json."""
    manifest = dict(manifest, schema=SCHEMA)
    manifest["files"] = {n: sha256_file(path / n) for n in bundle_files(manifest)}
    out = path / MANIFEST
    out.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


@dataclass(frozen=True)
class ModelPair:
    """The models one can choose between: an Edge TPU build and its CPU twin (either may be absent)."""

    edgetpu: Path | None
    cpu: Path | None

    @classmethod
    def from_file(cls, path: Path) -> "ModelPair":
        """A plain .tflite: find its twin by name (x.tflite <-> x_edgetpu.tflite) in the same folder."""
        info = read_model_io(path)  # validates the file before anything else looks at it
        if info.is_edgetpu:
            twin = path.with_name(path.name.replace("_edgetpu.tflite", ".tflite"))
            return cls(path, twin if twin != path and twin.is_file() else None)
        twin = path.with_name(path.stem + "_edgetpu.tflite")
        return cls(twin if twin.is_file() else None, path)


DEFAULT_BUNDLE = "yamnet-coral"


def default_bundle_path() -> Path:
    return data_home() / "models" / DEFAULT_BUNDLE


@dataclass
class ModelSource:
    """Where a classifier's model, labels and front-end settings come from."""

    models: ModelPair
    labels: Path
    frontend: FrontEndParams
    bundle: Bundle | None = None

    @property
    def name(self) -> str:
        if self.bundle is not None:
            return self.bundle.name
        return (self.models.cpu or self.models.edgetpu).stem.replace("_edgetpu", "")

    @property
    def digest(self) -> str:
        """sha256 naming this model: over a bundle's pinned files (its manifest's 'files'), else of the file."""
        if self.bundle is None:
            return sha256_file(self.models.cpu or self.models.edgetpu)
        digest = sha256()
        digest.update(json.dumps(self.bundle.manifest.get("files", {}), sort_keys=True).encode())
        return digest.hexdigest()


def model_files(path: Path) -> tuple[ModelPair, Bundle | None]:
    """The models at `path`: a bundle folder (hashes verified), or a plain .tflite with its twin found by name."""
    if path.is_dir():
        if not is_bundle(path):
            raise ModelError(f"{path}: folder has no manifest.json; give a .tflite file or a model bundle")
        b = load_bundle(path)
        return ModelPair(b.edgetpu_model, b.cpu_model), b
    return ModelPair.from_file(path), None


def resolve_model(model: str | Path | None, labels: str | Path | None = None) -> ModelSource:
    """A bundle folder, a plain .tflite (twin and labels found beside it), or the installed default bundle.
    The one resolver: the runtime, the benchmark and the host tools all find their models here."""
    path = Path(model) if model else default_bundle_path()
    if model is None and not path.exists():
        raise ModelError(f"no model given and the default bundle is not installed at {path}; "
                         "run 'make model' (or 'python -m tools fetch') or pass --model")
    pair, b = model_files(path)
    if b is not None:
        return ModelSource(pair, Path(labels) if labels else b.labels, b.frontend, b)
    label_path = Path(labels) if labels else find_labels_near(path)
    if label_path is None:
        raise InputError(f"{path}: no label file beside the model (labels.csv, yamnet_class_map.csv); "
                         "pass --labels")
    return ModelSource(pair, label_path, FrontEndParams())
