"""`inspect`: what a .tflite file holds, from its flatbuffer alone (it never loads an interpreter)."""

from __future__ import annotations

from pathlib import Path

from edge.model.tflite_file import EDGETPU_CUSTOM_OP, ModelInfo, TensorInfo, read_model_info


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
