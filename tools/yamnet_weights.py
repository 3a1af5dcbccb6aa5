"""YAMNet's network read out of the published waveform-input TFLite model.

The published `yamnet_classification.tflite` holds the log-mel front end followed by the network body:
27 convolutions (batch norm folded into weights and bias, ReLU fused), MEAN, FULLY_CONNECTED, LOGISTIC.
Most weights are int8 with per-channel scales (dynamic-range quantization); the first layers are float.
`read_yamnet_layers` returns every layer as float32 NumPy arrays in Keras layout, plus a NumPy reference
forward pass used to measure activation ranges.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.core.errors import ModelError
from edge.model.tflite_file import read_model_info


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


def _dequantize(data: np.ndarray, detail: dict) -> np.ndarray:
    if data.dtype == np.float32:
        return data
    q = detail["quantization_parameters"]
    scales, zeros, axis = q["scales"], q["zero_points"], int(q["quantized_dimension"])
    if not len(scales):
        raise ModelError(f"tensor {detail['name']!r} is {data.dtype} without quantization parameters")
    shape = [1] * data.ndim
    if len(scales) > 1:
        shape[axis] = len(scales)
    zeros = np.broadcast_to(np.asarray(zeros if len(zeros) else [0], np.float32), (len(scales),))
    return ((data.astype(np.float32) - np.reshape(zeros, shape)) * np.reshape(scales, shape).astype(np.float32))


def read_yamnet_layers(path: str | Path) -> YamnetWeights:
    """Dequantized weights of the 27 conv layers and the classifier of a YAMNet waveform-input model."""
    path = Path(path)
    info = read_model_info(path)  # one-line errors for missing/corrupt files before the interpreter sees it
    names = [op.name for op in info.operators]
    if names.count("CONV_2D") + names.count("DEPTHWISE_CONV_2D") != 27 or "LOGISTIC" not in names or \
            "LOG" not in names:
        raise ModelError(f"{path}: not the YAMNet classification model (expected the waveform-input model: a "
                         f"log-mel front end, 27 convolutions and a LOGISTIC output; found {info.op_histogram()})")
    from edge.model.runtime import load_backend

    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": that is what this is
        warnings.simplefilter("ignore")
        interpreter = load_backend().Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    counts = {"int8": 0, "float": 0}

    def weight(index: int) -> np.ndarray:
        data = interpreter.get_tensor(index)
        counts["float" if data.dtype == np.float32 else "int8"] += 1
        return _dequantize(data, details[index])

    layers: list[ConvLayer] = []
    dense = None
    for op in info.operators[names.index("LOG"):]:
        t_in, t_out = info.tensors[op.inputs[0]], info.tensors[op.outputs[0]]
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w, b = weight(op.inputs[1]), weight(op.inputs[2])
            stride = t_in.shape[1] // t_out.shape[1]
            if op.name == "CONV_2D":  # TFLite [out, kh, kw, in] -> Keras [kh, kw, in, out]
                kernel, kind = np.transpose(w, (1, 2, 3, 0)), "conv"
            else:  # TFLite [1, kh, kw, channels] -> Keras [kh, kw, channels, 1]
                kernel, kind = np.transpose(w, (1, 2, 3, 0)), "depthwise"
            layers.append(ConvLayer(kind, np.ascontiguousarray(kernel), b.astype(np.float32), stride,
                                    f"layer{len(layers)}_{kind}"))
        elif op.name == "FULLY_CONNECTED" and layers:
            w, b = weight(op.inputs[1]), weight(op.inputs[2])
            dense = (np.ascontiguousarray(w.T), b.astype(np.float32))
    if dense is None or len(layers) != 27:
        raise ModelError(f"{path}: could not find the network body's 27 convolutions and classifier")
    return YamnetWeights(layers, dense[0], dense[1], path, counts["int8"], counts["float"])


def bounded(weights: YamnetWeights, bounds: list, relu_cap: float = 6.0) -> YamnetWeights:
    """The same network with each layer's activations capped at `bounds[i]` and rescaled to [0, relu_cap].

    ReLU is positively homogeneous: relu(s*z) = s*relu(z) for s > 0. Scaling layer i's weights and bias by
    s_i = relu_cap / bound_i and dividing the next layer's input weights by s_i leaves the network unchanged
    except that a fused ReLU6 now clips at the bound. The int8 activation scale becomes relu_cap/255 for every
    layer, and the clip costs nothing at run time. A bound is one number per layer or one per output channel
    (the same identity holds channel by channel).
    """
    layers = []
    previous = np.ones(1, np.float32)  # scale of the current layer's input, per input channel (or one)
    for layer, bound in zip(weights.layers, bounds):
        s = (relu_cap / np.broadcast_to(np.asarray(bound, np.float64), (layer.out_channels,))).astype(np.float32)
        if layer.kind == "conv":  # [kh, kw, in, out]: undo the input's scale per input channel, apply s per output
            kernel = layer.kernel / previous[None, None, :, None] * s[None, None, None, :] if previous.size > 1 \
                else layer.kernel / previous[0] * s[None, None, None, :]
        else:  # depthwise [kh, kw, channels, 1]: channel c in, channel c out
            kernel = layer.kernel * (s / previous)[None, None, :, None]
        layers.append(ConvLayer(layer.kind, kernel.astype(np.float32), (layer.bias * s).astype(np.float32),
                                layer.stride, layer.name))
        previous = s
    return YamnetWeights(layers, (weights.dense_kernel / previous[:, None]).astype(np.float32), weights.dense_bias,
                         weights.source, weights.int8_tensors, weights.float_tensors)
