"""Static Edge TPU compatibility report for a .tflite file, without the compiler.

The rules are the Edge TPU compiler's documented requirements (coral.ai/docs/edgetpu/models-intro):
tensors int8/uint8, static shapes of at most 4 dimensions, operators from the supported list, and one
partition: the compiler maps operators in execution order and everything from the first operator it cannot
map onward runs on the CPU. The float-to-int8 QUANTIZE at the input and int8-to-float DEQUANTIZE at the output
stay on the CPU by design and are reported apart. Parameters beyond the ~8 MB on-chip cache are streamed from
host memory on every invoke.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge.app.command import add_command
from edge.model.tflite_file import EDGETPU_CUSTOM_OP, ModelInfo, TensorInfo, read_model_info

from .report import model_file

ON_CHIP_CACHE_BYTES = 8 * 1024 * 1024

# Operators the Edge TPU compiler can map (Coral's supported-operations table), as TFLite builtin names.
EDGETPU_OPS = frozenset(
    "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D EXPAND_DIMS FULLY_CONNECTED L2_NORMALIZATION "
    "LOGISTIC LSTM UNIDIRECTIONAL_SEQUENCE_LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MUL PACK PAD PRELU QUANTIZE "
    "REDUCE_MAX REDUCE_MIN RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SLICE "
    "SOFTMAX SPACE_TO_DEPTH SPLIT SQUEEZE STRIDED_SLICE SUB SUM SQUARED_DIFFERENCE TANH TRANSPOSE "
    "TRANSPOSE_CONV".split())
QUANTIZED_TYPES = ("int8", "uint8")


@dataclass
class OpVerdict:
    index: int
    op: str
    can_map: bool
    reason: str  # why not ("" when it can)
    placement: str = ""  # "tpu", "cpu", "io" (input quantize / output dequantize)


@dataclass
class CheckReport:
    model: str
    size_bytes: int
    already_compiled: bool
    subgraphs: int
    ops: list[OpVerdict]
    parameter_bytes: int
    tpu_parameter_bytes: int
    first_unmappable: OpVerdict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def predicted_tpu_ops(self) -> list[str]:
        return [o.op for o in self.ops if o.placement == "tpu"]

    @property
    def predicted_cpu_ops(self) -> list[str]:
        return [o.op for o in self.ops if o.placement == "cpu"]

    @property
    def io_ops(self) -> list[str]:
        return [o.op for o in self.ops if o.placement == "io"]

    @property
    def single_tpu_subgraph(self) -> bool:
        return bool(self.predicted_tpu_ops) and not self.predicted_cpu_ops

    def to_dict(self) -> dict:
        return {
            "model": self.model, "size_bytes": self.size_bytes, "already_compiled": self.already_compiled,
            "subgraphs": self.subgraphs,
            "predicted_tpu_ops": self.predicted_tpu_ops, "predicted_cpu_ops": self.predicted_cpu_ops,
            "io_ops_on_cpu": self.io_ops, "single_tpu_subgraph": self.single_tpu_subgraph,
            "first_unmappable": asdict(self.first_unmappable) if self.first_unmappable else None,
            "parameter_bytes": self.parameter_bytes, "tpu_parameter_bytes": self.tpu_parameter_bytes,
            "on_chip_cache_bytes": ON_CHIP_CACHE_BYTES,
            "fits_on_chip": self.tpu_parameter_bytes <= ON_CHIP_CACHE_BYTES,
            "ops": [asdict(o) for o in self.ops], "notes": self.notes,
        }


# Option fields (schema.fbs): Conv2DOptions dilation_w/h = 4, 5; DepthwiseConv2DOptions dilation_w/h = 5, 6;
# Pool2DOptions fused_activation_function = 5.
def _parameter_problem(info: ModelInfo, index: int) -> str:
    op = info.operators[index]
    if op.name == "CONV_2D" and op.option(4, "<i", 1) != op.option(5, "<i", 1):
        return "unsupported parameters: CONV_2D with different x and y dilation"
    if op.name == "DEPTHWISE_CONV_2D" and (op.option(5, "<i", 1) != 1 or op.option(6, "<i", 1) != 1):
        return "unsupported parameters: dilated DEPTHWISE_CONV_2D"
    if op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and op.option(5, "<b", 0) != 0:
        return f"unsupported parameters: {op.name} with a fused activation"
    if op.name in ("MEAN", "SUM") and len(op.inputs) > 1:
        rank = len(info.tensors[op.inputs[0]].shape)
        axes = {a % rank for a in (info.tensors[op.inputs[1]].int32_values or [])} if rank else set()
        if 0 in axes or (rank == 4 and 3 in axes):
            return f"unsupported parameters: {op.name} over the batch or channel axis (only x/y reductions map)"
    if op.name == "SOFTMAX":
        shape = info.tensors[op.inputs[0]].shape
        if len([d for d in shape if d != 1]) > 1 or int(np.prod(shape)) > 16000:
            return "unsupported parameters: SOFTMAX needs a 1-D input of at most 16000 elements"
    return ""


def _op_verdict(info: ModelInfo, index: int) -> tuple[bool, str]:
    op = info.operators[index]
    if op.name == EDGETPU_CUSTOM_OP:
        return True, ""
    if op.name not in EDGETPU_OPS:
        return False, f"unsupported op {op.name}"
    tensors: list[tuple[int, TensorInfo]] = [(i, info.tensors[i]) for i in op.inputs + op.outputs if i >= 0]
    for i, t in tensors:
        if t.dynamic:
            return False, f"dynamic shape (tensor {t.name or i} {t.shape})"
        if len(t.shape) > 4:
            return False, f"unsupported parameters: tensor {t.name or i} has {len(t.shape)} dimensions (max 4)"
    for i, t in tensors:
        constant = t.buffer_bytes > 0
        if constant and t.dtype == "int32":  # biases, shapes and axes
            continue
        if t.dtype not in QUANTIZED_TYPES:
            if op.name == "QUANTIZE" and t.dtype in ("int8", "uint8", "float32") and i in op.inputs:
                continue
            return False, f"type {t.dtype} is not int8/uint8 (tensor {t.name or i})"
        if not t.scale:
            return False, f"tensor {t.name or i} is {t.dtype} without quantization parameters"
    problem = _parameter_problem(info, index)
    return (False, problem) if problem else (True, "")


def check_model(path: str | Path) -> CheckReport:
    path = Path(path)
    info = read_model_info(path)
    input_ids = {id(t) for t in info.inputs}
    output_ids = {id(t) for t in info.outputs}
    ops: list[OpVerdict] = []
    n = len(info.operators)
    # QUANTIZE ops reading float model inputs at the start, DEQUANTIZE ops writing model outputs at the end
    lead, tail = 0, n
    while lead < n and info.operators[lead].name == "QUANTIZE" and \
            id(info.tensors[info.operators[lead].inputs[0]]) in input_ids and \
            info.tensors[info.operators[lead].inputs[0]].dtype == "float32":
        lead += 1
    while tail > lead and info.operators[tail - 1].name == "DEQUANTIZE" and \
            id(info.tensors[info.operators[tail - 1].outputs[0]]) in output_ids:
        tail -= 1
    first_bad = None
    tpu_params = 0
    for i, op in enumerate(info.operators):
        if i < lead or i >= tail:
            ops.append(OpVerdict(i, op.name, False, "float input/output conversion stays on the CPU", "io"))
            continue
        ok, why = _op_verdict(info, i)
        v = OpVerdict(i, op.name, ok, why)
        if first_bad is None and not ok:
            first_bad = v
        v.placement = "tpu" if first_bad is None else "cpu"
        if v.placement == "tpu":
            tpu_params += sum(info.tensors[j].buffer_bytes for j in op.inputs if j >= 0)
        ops.append(v)
    notes = []
    if info.is_edgetpu:
        notes.append("already compiled for the Edge TPU: the edgetpu-custom-op runs on the TPU")
    if info.subgraphs > 1:
        notes.append(f"{info.subgraphs} subgraphs: the compiler maps only the first")
    if first_bad is not None:
        notes.append(f"op {first_bad.index} ({first_bad.op}) cannot map: {first_bad.reason}; it and every op "
                     "after it would run on the CPU")
    return CheckReport(str(path), info.size_bytes, info.is_edgetpu, info.subgraphs, ops, info.parameter_bytes,
                       tpu_params, first_bad, notes)


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MiB"


def format_report(r: CheckReport) -> str:
    lines = [f"{r.model}: {r.size_bytes} bytes, {len(r.ops)} operators"]
    if r.already_compiled:
        lines.append("  already compiled for the Edge TPU")
    lines.append(f"  {'#':>3}  {'operator':<22} {'placement':<9} reason")
    for o in r.ops:
        lines.append(f"  {o.index:>3}  {o.op:<22} {o.placement:<9} {o.reason}")
    tpu, cpu = r.predicted_tpu_ops, r.predicted_cpu_ops
    if r.single_tpu_subgraph:
        split = f"one Edge TPU subgraph of {len(tpu)} ops, no CPU ops"
    elif not tpu:
        split = f"nothing maps: all {len(cpu)} ops run on the CPU"
    else:
        split = f"{len(tpu)} ops on the Edge TPU, then {len(cpu)} on the CPU"
    lines.append(f"predicted split: {split}" + (f" (+{len(r.io_ops)} input/output conversion on the CPU)"
                                                 if r.io_ops else ""))
    fits = "fits in" if r.tpu_parameter_bytes <= ON_CHIP_CACHE_BYTES else "exceeds"
    lines.append(f"parameters: {_mb(r.parameter_bytes)} total, {_mb(r.tpu_parameter_bytes)} on the Edge TPU "
                 f"({fits} the ~8 MiB on-chip cache)")
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = add_command(sub, "check", "static Edge TPU compatibility report (no compiler needed)",
                    "Per operator: can the Edge TPU compiler map it, and why not (type not int8/uint8, unsupported "
                    "op, dynamic shape, unsupported parameters); the predicted split (everything from the first "
                    "unmappable op runs on the CPU; input QUANTIZE/output DEQUANTIZE are listed apart) and the "
                    "parameter size against the ~8 MiB on-chip cache.",
                    ["python -m tools check out/yamnet-int8", "python -m tools check model.tflite --json"])
    p.add_argument("model", metavar="MODEL|BUNDLE")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    report = check_model(model_file(args.model))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0
