"""A trained head and its backbone exported as one fully int8 model: log-mel patch [1, 96, 64] in, the new
classes' scores out first (what `edge-audio classify` and the daemon read), optionally YAMNet's 521 AudioSet
scores as a second output. The backbone keeps its ReLU6 clips, so every activation maps to int8 as in the base
model, and the whole network is one Edge TPU subgraph (tools.model.check)."""

from __future__ import annotations

import numpy as np

from edge.core.errors import ModelError
from edge.model.tflite_edit import move_operators_to_end, reorder_outputs, set_tensor_quantization
from edge.model.tflite_file import read_model_info

from .embeddings import Backbone
from ..model.tflite_patch import range_to_int8

LOGIT_FLOOR = -8.0  # as tools.model.build: below it the AudioSet sigmoid's int8 output is already 0


def keras_export_model(backbone: Backbone, head, with_audioset: bool):
    """Backbone + head (dropout left out: it only acts in training) [+ YAMNet's classifier] as one Keras model."""
    from ..model import quantize as q
    tf = q.load_tensorflow()
    inp, _, embedding = q.keras_trunk(backbone.weights, relu6=True, batch_size=1)
    x = embedding
    for layer in head.layers:
        if isinstance(layer, tf.keras.layers.Dense):
            dense = tf.keras.layers.Dense(layer.units, activation=layer.activation, name=f"head_{layer.name}")
            x = dense(x)
            dense.set_weights(layer.get_weights())
    outputs = [x]
    logits = None
    if with_audioset:
        logits, scores = q.audioset_scores(backbone.weights, embedding, name="audioset")
        outputs.append(scores)
    model = tf.keras.Model(inp, outputs if len(outputs) > 1 else x, name="yamnet_custom_head")
    return model, (tf.keras.Model(inp, logits) if logits is not None else None)


def audioset_logit_range(backbone: Backbone, logits_model, patches: np.ndarray) -> tuple[float, float]:
    """The base bundle's own logits range when it recorded one (so the AudioSet output quantizes as the base
    does), else the floor to the largest logit the calibration patches produce."""
    recorded = ((backbone.manifest.get("quantization") or {}).get("logit_range"))
    if recorded and len(recorded) == 2:
        return float(recorded[0]), float(recorded[1])
    from ..model import quantize as q
    return LOGIT_FLOOR, float(np.max(q.run_keras(logits_model, patches)[0]))


def export_int8(backbone: Backbone, head, n_classes: int, patches: np.ndarray,
                with_audioset: bool) -> tuple[bytes, dict]:
    """The int8 model's bytes and a description of its quantization and outputs."""
    from ..model import quantize as q
    model, logits_model = keras_export_model(backbone, head, with_audioset)
    data = q.to_tflite_int8(model, patches, "float")
    info = _info(data)
    if with_audioset and _output_activations(info) == ["LOGISTIC", "SOFTMAX"]:
        data = reorder_outputs(data, [1, 0])  # the converter lists outputs by name: the classes go first
        info = _info(data)
    data = _output_conversions_last(data, info)
    info = _info(data)
    expected = ["SOFTMAX", "LOGISTIC"] if with_audioset else ["SOFTMAX"]
    if _output_activations(info) != expected or info.outputs[0].shape[-1] != n_classes:
        raise ModelError(f"the exported model's outputs come from {_output_activations(info)}, expected {expected}")
    record = {"scheme": "full int8 post-training quantization, per-channel weights; backbone activations ReLU6",
              "calibration_patches": int(len(patches))}
    if with_audioset:
        low, high = audioset_logit_range(backbone, logits_model, patches)
        logistic = next(op for op in info.operators if op.name == "LOGISTIC")
        data = set_tensor_quantization(data, logistic.inputs[0], *range_to_int8(low, high))
        record["audioset_logit_range"] = [round(low, 4), round(high, 4)]
        info = _info(data)
    record["input"] = {"dtype": info.inputs[0].dtype, "shape": info.inputs[0].shape}
    record["outputs"] = [{"dtype": t.dtype, "shape": t.shape} for t in info.outputs]
    return data, record


def _output_conversions_last(data: bytes, info) -> bytes:
    """Run the float conversions of the outputs (DEQUANTIZE) after every int8 operator, so the int8 body is one
    contiguous run for the Edge TPU compiler (it maps operators in order and stops at the first it cannot)."""
    index = {id(t): i for i, t in enumerate(info.tensors)}
    outputs = {index[id(t)] for t in info.outputs}
    read = {i for op in info.operators for i in op.inputs}
    convert = [k for k, op in enumerate(info.operators)
               if op.name == "DEQUANTIZE" and op.outputs[0] in outputs and op.outputs[0] not in read]
    tail = list(range(len(info.operators) - len(convert), len(info.operators)))
    return data if convert == tail else move_operators_to_end(data, convert)


def _output_activations(info) -> list[str]:
    """The operator behind each output, looking through a final DEQUANTIZE."""
    producer = {o: op for op in info.operators for o in op.outputs}
    names = []
    index = {id(t): i for i, t in enumerate(info.tensors)}
    for t in (index[id(t)] for t in info.outputs):
        op = producer.get(t)
        if op is not None and op.name == "DEQUANTIZE":
            op = producer.get(op.inputs[0])
        names.append(op.name if op is not None else "?")
    return names


def _info(data: bytes):
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.tflite"
        path.write_bytes(data)
        return read_model_info(path)


def run_outputs(model_path, patches: np.ndarray) -> list[np.ndarray]:
    """Every output of a patch-input model over many patches: one [patches, size] array per output."""
    from edge.model.runtime import load_backend
    interpreter = load_backend().Interpreter(model_path=str(model_path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    outs = interpreter.get_output_details()
    results = [np.zeros((len(patches), int(np.prod(o["shape"]))), np.float32) for o in outs]
    for i, p in enumerate(patches):
        interpreter.set_tensor(inp["index"], p.reshape(inp["shape"]).astype(np.float32))
        interpreter.invoke()
        for r, o in zip(results, outs):
            value = interpreter.get_tensor(o["index"]).reshape(-1).astype(np.float32)
            scale, zero = o["quantization"]
            r[i] = (value - zero) * scale if o["dtype"] != np.float32 and scale else value
    return results
