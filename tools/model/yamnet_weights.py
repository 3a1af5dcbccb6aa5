"""YAMNet's network read out of any of its published forms (SOURCE_KINDS).

- The published `yamnet_classification.tflite` holds the log-mel front end followed by the network body:
  27 convolutions (batch norm folded into weights and bias, ReLU fused), MEAN, FULLY_CONNECTED, LOGISTIC.
  Most weights are int8 with per-channel scales (dynamic-range quantization); the first layers are float.
- Coral's `yamnet_spectra_in.tflite` is the same body with log-mel patch input, fully int8: per-channel int8
  weights, int32 biases, ReLU6 fused and every activation held within [0, 6].
- The Keras checkpoint `yamnet.h5` has the float weights with batch norm as separate layers (tools.model.yamnet_keras).

`read_yamnet_layers` returns every layer as float32 NumPy arrays in Keras layout with batch norm folded, and
where the source clips its activations (ReLU6, an int8 range), the clip per layer.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from edge.core.errors import ModelError
from edge.model.tflite_file import read_model_info

from .yamnet_layers import ConvLayer, YamnetWeights


# The published forms of YAMNet that `build` can read its network out of.
SOURCE_KINDS = {
    "waveform_tflite": "the published waveform-input TFLite model (log-mel front end inside, int8 weights)",
    "patch_int8_tflite": "a full-int8 log-mel-patch-input model (Coral's int8 twin, or a bundle built by the kit)",
    "keras_h5": "the original Keras checkpoint yamnet.h5 (float weights, batch norm not folded)",
}
CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
# ActivationFunctionType in the conv options (schema.fbs): NONE 0, RELU 1, RELU_N1_TO_1 2, RELU6 3
_FUSED_ACTIVATION_FIELD = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 4}
RELU, RELU6 = 1, 3


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


def source_kind(path: str | Path) -> str:
    """Which published form of YAMNet `path` is (see SOURCE_KINDS); ModelError (one line) when it is none."""
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5", ".keras"):
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        with open(path, "rb") as f:
            if f.read(8) != b"\x89HDF\r\n\x1a\n":
                raise ModelError(f"{path}: not a readable HDF5 file (no HDF5 signature)")
        return "keras_h5"
    info = read_model_info(path)  # one-line errors for missing/corrupt files before the interpreter sees it
    names = [op.name for op in info.operators]
    convs = sum(names.count(n) for n in CONV_OPS)
    if info.is_edgetpu:
        raise ModelError(f"{path}: compiled for the Edge TPU (its network is one opaque op); give its CPU twin")
    if convs == 27 and "LOGISTIC" in names and "LOG" in names:
        return "waveform_tflite"
    shape = [d for d in info.inputs[0].shape if d != 1]
    layer_types = {info.tensors[op.outputs[0]].dtype for op in info.operators if op.name in CONV_OPS}
    if convs == 27 and "LOGISTIC" in names and shape == [96, 64] and layer_types == {"int8"}:
        return "patch_int8_tflite"
    raise ModelError(f"{path}: not a YAMNet model the build can read (expected the published waveform model, a "
                     f"full-int8 log-mel patch model such as Coral's twin, or yamnet.h5; found "
                     f"{info.op_histogram()})")


def read_yamnet_layers(path: str | Path) -> YamnetWeights:
    """Float32 weights of the 27 conv layers and the classifier of any published YAMNet form (SOURCE_KINDS)."""
    path = Path(path)
    kind = source_kind(path)
    if kind == "keras_h5":
        from .yamnet_keras import read_keras_h5
        return read_keras_h5(path)
    return _read_tflite(path, kind)


def _activation_cap(info, op) -> float | None:
    """Where a fused activation clips, in the layer's float units: 6 for RELU6, and for an int8 output the
    largest value its range can hold (Coral's twin keeps every activation within [0, 6])."""
    fused = op.option(_FUSED_ACTIVATION_FIELD[op.name], "<b", 0)
    if fused not in (RELU, RELU6):
        raise ModelError(f"{info.path}: a convolution with fused activation {fused} (expected ReLU or ReLU6)")
    caps = [6.0] if fused == RELU6 else []
    out = info.tensors[op.outputs[0]]
    if out.dtype == "int8" and len(out.scale) == 1:
        caps.append((127 - out.zero_point[0]) * out.scale[0])
    return min(caps) if caps else None


def _read_tflite(path: Path, kind: str) -> YamnetWeights:
    info = read_model_info(path)
    names = [op.name for op in info.operators]
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
    caps: list = []
    dense = None
    for op in info.operators[names.index("LOG") if kind == "waveform_tflite" else 0:]:
        t_in, t_out = info.tensors[op.inputs[0]], info.tensors[op.outputs[0]]
        if op.name in CONV_OPS:
            w, b = weight(op.inputs[1]), weight(op.inputs[2])
            stride = t_in.shape[1] // t_out.shape[1]
            # TFLite conv [out, kh, kw, in] -> Keras [kh, kw, in, out]; depthwise [1, kh, kw, c] -> [kh, kw, c, 1]
            kind_of_layer = "conv" if op.name == "CONV_2D" else "depthwise"
            layers.append(ConvLayer(kind_of_layer, np.ascontiguousarray(np.transpose(w, (1, 2, 3, 0))),
                                    b.astype(np.float32), stride, f"layer{len(layers)}_{kind_of_layer}"))
            caps.append(_activation_cap(info, op))
        elif op.name == "FULLY_CONNECTED" and layers:
            w, b = weight(op.inputs[1]), weight(op.inputs[2])
            dense = (np.ascontiguousarray(w.T), b.astype(np.float32))
    if dense is None or len(layers) != 27:
        raise ModelError(f"{path}: could not find the network body's 27 convolutions and classifier")
    return YamnetWeights(layers, dense[0], dense[1], path, counts["int8"], counts["float"], kind,
                         caps if any(c is not None for c in caps) else [])


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
                         weights.source, weights.int8_tensors, weights.float_tensors, weights.kind,
                         [relu_cap] * len(layers))
