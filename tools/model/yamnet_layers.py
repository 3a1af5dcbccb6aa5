"""YAMNet's network as float32 NumPy arrays (Keras layout, batch norm folded): what every reader of a published
form returns (yamnet_weights.py for the .tflite forms, yamnet_keras.py for the Keras checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ConvLayer:
    kind: str  # "conv" or "depthwise"
    kernel: np.ndarray  # Keras layout: conv [kh, kw, in, out]; depthwise [kh, kw, channels, 1]
    bias: np.ndarray
    stride: int
    name: str

    @property
    def out_channels(self) -> int:
        return self.bias.shape[0]


@dataclass
class YamnetWeights:
    layers: list[ConvLayer]
    dense_kernel: np.ndarray  # [1024, classes]
    dense_bias: np.ndarray  # [classes]
    source: Path
    int8_tensors: int  # how many weight tensors were dequantized from int8
    float_tensors: int
    kind: str = "waveform_tflite"  # see SOURCE_KINDS
    caps: list = field(default_factory=list)  # per layer: the activation's upper clip in its units, or None (ReLU)

    def cap(self, i: int) -> float | None:
        return self.caps[i] if self.caps else None
