"""Choosing an int8 range for a tensor (the edit itself is edge.model.tflite_edit.set_tensor_quantization).

Used to give the logits tensor a range chosen for the sigmoid after it: below about -6.2 the int8 sigmoid output
is already 0 (its scale is 1/256), so clamping very negative logits there loses nothing and buys resolution
where scores are read.
"""

from __future__ import annotations


def range_to_int8(low: float, high: float) -> tuple[float, int]:
    """Scale and zero point that map [low, high] (containing 0) onto int8 [-128, 127]."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0
    zero = int(round(-128 - low / scale))
    return scale, max(-128, min(127, zero))
