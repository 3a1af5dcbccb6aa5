"""Rebuilding YAMNet's patch-input body in Keras and quantizing it to full int8 (TensorFlow: host only).

    keras_trunk(weights, relu6)     [batch, 96, 64] log-mel -> 27 convs -> mean: the 1024-d embedding
    keras_body(weights, relu6)      [1, 96, 64] log-mel -> 27 convs -> mean -> dense -> sigmoid
    activation_bounds(...)          per-layer high percentile of what calibration patches produce
    to_tflite_float / to_tflite_int8
"""

from __future__ import annotations

import sys

import numpy as np

from edge.core.console import Progress, verbose

from .yamnet_weights import YamnetWeights


def load_tensorflow():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # also keeps float results independent of the CPU
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    return tf


def _convert(converter, progress_stream: list | None = None) -> bytes:
    """converter.convert() with TensorFlow's chatter (SavedModel summaries on stdout, C++ logs on stderr) kept off
    the terminal; it is shown if the conversion fails, or always with --verbose. Progress written to
    progress_stream[0] during the conversion still reaches the real stderr."""
    import os
    import tempfile
    import warnings
    if verbose():
        return converter.convert()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    real_stderr = os.fdopen(os.dup(2), "w")
    if progress_stream is not None:
        progress_stream[0] = real_stderr
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return converter.convert()
        except Exception:
            os.dup2(saved[1], 2)
            log.seek(0)
            sys.stderr.write(log.read().decode("utf-8", "replace")[-4000:])
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            real_stderr.close()
            if progress_stream is not None:
                progress_stream[0] = sys.stderr


def keras_trunk(weights: YamnetWeights, relu6: bool = False, batch_size: int | None = 1):
    """The 27 convolutions and the mean over time and frequency: (input [batch, 96, 64], the conv activations,
    the 1024-d embedding). relu6=True fuses ReLU6 everywhere (for bounded weights); otherwise each layer clips
    where the source clipped (Coral's twin: ReLU6) or not at all."""
    tf = load_tensorflow()
    layers = tf.keras.layers
    inp = layers.Input(shape=(96, 64), batch_size=batch_size, name="log_mel_patch")
    x = layers.Reshape((96, 64, 1))(inp)
    acts = []
    for i, layer in enumerate(weights.layers):
        cap = 6.0 if relu6 else weights.cap(i)
        act = "relu6" if cap == 6.0 else "relu" if cap is None else None
        if layer.kind == "conv":
            k = layer.kernel
            conv = layers.Conv2D(k.shape[3], k.shape[:2], strides=layer.stride, padding="same", activation=act,
                                 name=layer.name)
        else:
            conv = layers.DepthwiseConv2D(layer.kernel.shape[:2], strides=layer.stride, padding="same",
                                          activation=act, name=layer.name)
        x = conv(x)
        conv.set_weights([layer.kernel, layer.bias])
        if act is None:
            x = layers.ReLU(max_value=cap, name=f"{layer.name}_clip")(x)
        acts.append(x)
    return inp, acts, layers.GlobalAveragePooling2D(name="mean")(x)


def audioset_scores(weights: YamnetWeights, embedding, name: str = "scores"):
    """(logits, sigmoid scores) of YAMNet's own 521-class classifier on an embedding tensor."""
    layers = load_tensorflow().keras.layers
    dense = layers.Dense(weights.dense_kernel.shape[1], name="logits")
    logits = dense(embedding)
    dense.set_weights([weights.dense_kernel, weights.dense_bias])
    return logits, layers.Activation("sigmoid", name=name)(logits)


def keras_body(weights: YamnetWeights, relu6: bool = False, with_activations: bool = False):
    """The network as a Keras model with static batch 1: [1, 96, 64] log-mel -> 521 scores (and with
    with_activations, the logits and every conv activation after them)."""
    tf = load_tensorflow()
    inp, acts, embedding = keras_trunk(weights, relu6)
    logits, scores = audioset_scores(weights, embedding)
    outputs = [scores, logits] + acts if with_activations else scores
    return tf.keras.Model(inp, outputs, name="yamnet_patch_body")


def run_keras(model, patches: np.ndarray, batch: int = 1) -> list[np.ndarray] | np.ndarray:
    """Run a batch-1 model over many patches (stacking the outputs)."""
    outs = None
    fn = load_tensorflow().function(lambda x: model(x, training=False))
    for p in patches:
        y = fn(p[None].astype(np.float32))
        y = [t.numpy() for t in y] if isinstance(y, (list, tuple)) else [y.numpy()]
        if outs is None:
            outs = [[] for _ in y]
        for o, t in zip(outs, y):
            o.append(t)
    return [np.concatenate(o) for o in outs]


def activation_bounds(weights: YamnetWeights, patches: np.ndarray, percentile: float, per_channel: bool = False,
                      channel_floor: float = 0.5) -> list:
    """For each conv layer, the `percentile` of its (ReLU) activations over all calibration patches (at most the
    source's own clip): one number per layer, or with per_channel one per output channel, kept between
    channel_floor x and 1 x the layer's."""
    probe = keras_body(weights, with_activations=True)
    values = run_keras(probe, patches)
    bounds = []
    for i, a in enumerate(values[2:]):
        layer = max(float(np.percentile(a.reshape(-1), percentile)), 1e-3)
        if weights.cap(i) is not None:  # never above where the source itself clips
            layer = min(layer, weights.cap(i))
        if per_channel:
            channel = np.percentile(a.reshape(-1, a.shape[-1]), percentile, axis=0)
            bounds.append(np.clip(channel, channel_floor * layer, layer))
        else:
            bounds.append(layer)
    return bounds


def _converter(model):
    tf = load_tensorflow()
    return tf.lite.TFLiteConverter.from_keras_model(model)


def to_tflite_float(model) -> bytes:
    return _convert(_converter(model))


def to_tflite_int8(model, patches: np.ndarray, io_type: str = "float", progress: bool = True) -> bytes:
    """Full-integer post-training quantization; io_type 'float' keeps float32 input/output around the
    int8 body (QUANTIZE/DEQUANTIZE at the edges), 'int8' makes the input and output int8 too."""
    tf = load_tensorflow()
    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    total = len(patches)
    stream = [sys.stderr]

    def representative():  # runs inside _convert, which hands the real stderr over in stream[0]
        with Progress(total, stream[0]) as shown:
            for i, p in enumerate(patches):
                if progress:
                    shown.show(i + 1, f"  calibrating the quantizer: {i + 1}/{total} patches")
                yield [p[None].astype(np.float32)]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_type == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return _convert(converter, stream)
