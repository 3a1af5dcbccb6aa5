"""Model bundles: a folder with manifest.json naming the models, labels and front end, with sha256 pins.

    manifest.json        {"schema": 1, "name", "input_kind", "frontend", "models": {"edgetpu"?, "cpu"},
                          "labels", "quantization", "compiler", "source", "files": {name: sha256}}
    <cpu model>.tflite   always present: the fallback
    <name>_edgetpu.tflite  optional
    labels file
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError
from .frontend import FrontEndParams

MANIFEST = "manifest.json"
SCHEMA = 1
INPUT_KINDS = ("waveform", "logmel_patch")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and check a bundle. Every file named in the manifest must exist and match its sha256."""
    path = Path(path)
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: not a model bundle (no {MANIFEST}); run 'make model' to install one") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{manifest_path}: unreadable manifest ({exc})") from None
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
                        frontend=frontend, manifest=manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{manifest_path}: malformed manifest ({exc.__class__.__name__}: {exc})") from None
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise ModelError(f"{file}: missing from the bundle; reinstall it ('make model')")
        if verify and sha256_file(file) != expected:
            raise ModelError(f"{file}: sha256 does not match the manifest (corrupt or modified); reinstall it")
    for required in filter(None, (bundle.cpu_model, bundle.edgetpu_model, bundle.labels)):
        if required.name not in files:
            raise ModelError(f"{manifest_path}: {required.name} has no sha256 in 'files'")
    return bundle


def write_manifest(path: Path, manifest: dict) -> Path:
    """Fill in 'files' with the sha256 of every model and label file named, and write manifest.json."""
    names = [manifest["models"].get("cpu"), manifest["models"].get("edgetpu"), manifest["labels"]]
    manifest = dict(manifest, schema=SCHEMA)
    manifest["files"] = {n: sha256_file(path / n) for n in names if n}
    out = path / MANIFEST
    out.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out
