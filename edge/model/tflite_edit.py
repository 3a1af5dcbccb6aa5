"""In-place edits of a .tflite file's bytes (same sizes, so nothing moves): one tensor's quantization, the order
of the outputs, the order of the operators. The host tools use them; the device only reads
(edge.model.tflite_file)."""

from __future__ import annotations

import struct

from ..core.errors import ModelError
from .tflite_file import CorruptModel, FlatReader


def set_tensor_quantization(model: bytes, tensor_index: int, scale: float, zero_point: int) -> bytes:
    """A copy of `model` with tensor `tensor_index` (first subgraph) given one scale and zero point, edited in
    place (same sizes, so nothing moves). Raises ModelError for a tensor without one per-tensor range."""
    data = bytearray(model)
    r = FlatReader(bytes(data))
    try:
        tensor = r.table(r.deref(0)).tables(2)[0].tables(0)[tensor_index]
        q = tensor.table(4)
        if q is None:
            raise ModelError(f"tensor {tensor_index} has no quantization parameters to change")
        scale_at, n_scale = q.vector_span(2)
        zero_at, n_zero = q.vector_span(3)
    except (CorruptModel, struct.error, IndexError):
        raise ModelError(f"tensor {tensor_index}: model file is truncated or corrupt") from None
    if n_scale != 1 or n_zero != 1:
        raise ModelError(f"tensor {tensor_index} is quantized per channel; expected one scale")
    struct.pack_into("<f", data, scale_at, float(scale))
    struct.pack_into("<q", data, zero_at, int(zero_point))
    return bytes(data)


def reorder_outputs(model: bytes, order: list[int]) -> bytes:
    """A copy of `model` whose first subgraph lists its outputs in `order` (a permutation of the current
    positions), edited in place. Tensors, operators and signatures are untouched; only the order in which an
    interpreter reports the outputs changes."""
    data = bytearray(model)
    r = FlatReader(bytes(data))
    try:
        subgraph = r.table(r.deref(0)).tables(2)[0]
        start, n = subgraph.vector_span(2)
        current = subgraph.vector(2, "<i")
    except (CorruptModel, struct.error, IndexError):
        raise ModelError("model file is truncated or corrupt") from None
    if sorted(order) != list(range(n)):
        raise ModelError(f"output order {order} is not a permutation of the model's {n} outputs")
    struct.pack_into(f"<{n}i", data, start, *[current[i] for i in order])
    return bytes(data)


def move_operators_to_end(model: bytes, indices: list[int]) -> bytes:
    """A copy of `model` whose first subgraph runs the operators at `indices` last (in the order given), edited
    in place. Only valid when no other operator reads their outputs (e.g. the DEQUANTIZE of a model output):
    the caller checks that; the execution order of everything else is kept."""
    data = bytearray(model)
    r = FlatReader(bytes(data))
    try:
        subgraph = r.table(r.deref(0)).tables(2)[0]
        start, n = subgraph.vector_span(3)
        targets = [r.deref(start + 4 * i) for i in range(n)]  # absolute position of each operator table
    except (CorruptModel, struct.error, IndexError):
        raise ModelError("model file is truncated or corrupt") from None
    if not set(indices) <= set(range(n)):
        raise ModelError(f"operator indices {indices} out of range (the model has {n})")
    order = [i for i in range(n) if i not in set(indices)] + list(indices)
    for slot, i in enumerate(order):
        position = start + 4 * slot
        struct.pack_into("<I", data, position, targets[i] - position)
    return bytes(data)
