"""`inspect`: what a .tflite file holds, from its flatbuffer alone (it never loads an interpreter)."""

from __future__ import annotations

import json
from pathlib import Path

from edge.app.command import add_command
from edge.model.tflite_file import EDGETPU_CUSTOM_OP, ModelInfo, TensorInfo, read_model_info


def add_parser(sub) -> None:
    p = add_command(sub, "inspect", "inputs/outputs, quantization, operators, Edge TPU ops and size of a .tflite",
                    "What a model holds, read from the file without an interpreter: the first thing to look at when "
                    "a model does not load.",
                    ["python -m tools inspect ../shared/models/coral/yamnet_spectra_in_edgetpu.tflite",
                     "python -m tools inspect out/yamnet-int8 --json"])
    p.add_argument("model", metavar="MODEL|BUNDLE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:
    from edge.model.bundle import is_bundle, load_bundle
    path = Path(args.model)
    if is_bundle(path):  # every model in it, with the manifest's summary
        b = load_bundle(path)
        models = [inspect_model(m) for m in (b.edgetpu_model, b.cpu_model) if m is not None]
        summary = {"bundle": str(path), "name": b.name, "input_kind": b.input_kind, "labels": b.labels.name,
                   "compiler": (b.manifest.get("compiler") or {}).get("version"), "models": models}
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(f"bundle {path}: {b.name}, {b.input_kind} input, labels {b.labels.name}, "
                  f"{'Edge TPU + CPU models' if b.edgetpu_model else 'CPU model only'}; hashes verified")
            print("\n".join(format_inspect(m) for m in models))
        return 0
    d = inspect_model(model_file(args.model))
    print(json.dumps(d, indent=2) if args.json else format_inspect(d))
    return 0


def model_file(path: str) -> Path:
    """A .tflite as given, or a bundle's CPU model."""
    from edge.model.bundle import model_files
    p = Path(path)
    return model_files(p)[0].cpu if p.is_dir() else p


def _tensor(t: TensorInfo) -> dict:
    d = {"name": t.name, "shape": t.shape, "dtype": t.dtype}
    if t.scale:
        d["quantization"] = {"scale": t.scale[:4], "zero_point": t.zero_point[:4],
                             "per_channel": len(t.scale) > 1}
    return d


def inspect_model(path: str | Path) -> dict:
    info: ModelInfo = read_model_info(path)
    return {
        "model": str(info.path), "size_bytes": info.size_bytes, "schema_version": info.version,
        "subgraphs": info.subgraphs,
        "inputs": [_tensor(t) for t in info.inputs], "outputs": [_tensor(t) for t in info.outputs],
        "operators": len(info.operators), "op_histogram": info.op_histogram(),
        "edgetpu": info.is_edgetpu,
        "edgetpu_ops": sum(1 for op in info.operators if op.name == EDGETPU_CUSTOM_OP),
        "parameter_bytes": info.parameter_bytes,
        "tensor_types": sorted({t.dtype for t in info.tensors}),
    }


def format_inspect(d: dict) -> str:
    def q(t):
        if "quantization" not in t:
            return ""
        qq = t["quantization"]
        return (f" per-channel ({len(qq['scale'])}+ scales)" if qq["per_channel"]
                else f" scale {qq['scale'][0]:.6g} zero point {qq['zero_point'][0]}")

    lines = [f"{d['model']}: {d['size_bytes']} bytes ({d['size_bytes'] / 1e6:.2f} MB), {d['operators']} operators"
             f", {d['subgraphs']} subgraph(s), parameters {d['parameter_bytes'] / 1e6:.2f} MB"]
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            lines.append(f"  {kind[:-1]:<6} {t['name'] or '?'}: {t['dtype']} {t['shape']}{q(t)}")
    lines.append("  operators: " + ", ".join(f"{k} x{v}" for k, v in d["op_histogram"].items()))
    if d["edgetpu"]:
        lines.append(f"  Edge TPU model: {d['edgetpu_ops']} {EDGETPU_CUSTOM_OP} op(s); it needs the Edge TPU "
                     "runtime (libedgetpu) and a Coral device, or its CPU twin")
    else:
        lines.append("  not compiled for the Edge TPU (runs on the CPU; see 'check' for what would map)")
    lines.append(f"  tensor types: {', '.join(d['tensor_types'])}")
    return "\n".join(lines)
