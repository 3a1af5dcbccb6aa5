"""In-place edits of a .tflite file's quantization parameters (same sizes, so nothing moves).

Used to give the logits tensor a range chosen for the sigmoid after it: below about -6.2 the int8 sigmoid output
is already 0 (its scale is 1/256), so clamping very negative logits there loses nothing and buys resolution
where scores are read.
"""

from __future__ import annotations

import struct

from edge.errors import ModelError
from edge.tflite_file import _Reader


def set_tensor_quantization(model: bytes, tensor_index: int, scale: float, zero_point: int) -> bytes:
    """A copy of `model` with tensor `tensor_index` (first subgraph) given one scale and zero point."""
    data = bytearray(model)
    r = _Reader(bytes(data))
    root = r.table(r.deref(0))
    tensor = root.tables(2)[0].tables(0)[tensor_index]
    q = tensor.table(4)
    if q is None:
        raise ModelError(f"tensor {tensor_index} has no quantization parameters to change")
    scale_at, n_scale = q._vector(2)
    zero_at, n_zero = q._vector(3)
    if n_scale != 1 or n_zero != 1:
        raise ModelError(f"tensor {tensor_index} is quantized per channel; expected one scale")
    struct.pack_into("<f", data, scale_at, float(scale))
    struct.pack_into("<q", data, zero_at, int(zero_point))
    return bytes(data)


def range_to_int8(low: float, high: float) -> tuple[float, int]:
    """Scale and zero point that map [low, high] (containing 0) onto int8 [-128, 127]."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0
    zero = int(round(-128 - low / scale))
    return scale, max(-128, min(127, zero))
