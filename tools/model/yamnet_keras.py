"""YAMNet's network read out of the original Keras checkpoint, `yamnet.h5` (float32, the authors' own weights).

The checkpoint is Keras 2 `save_weights` HDF5: one group per layer, each holding its weights as
`<layer>/<weight>:0`. The network is a stem convolution (layer1/conv) and 13 depthwise-separable blocks
(layerN/depthwise_conv, layerN/pointwise_conv), each convolution without bias and followed by batch norm with
`center=True, scale=False, epsilon=1e-4` (so beta, moving_mean and moving_variance, no gamma), then ReLU; the
classifier is `logits` (kernel and bias). Batch norm is folded into the convolution here:
    kernel' = kernel / sqrt(var + eps)  (per output channel),  bias' = beta - mean / sqrt(var + eps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.core.errors import ModelError

from .yamnet_layers import ConvLayer, YamnetWeights

BATCHNORM_EPSILON = 1e-4
# (stride of the stem or of the depthwise convolution, output channels), as in the model's definition
LAYER_DEFS = ((2, 32), (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512), (1, 512), (1, 512),
              (1, 512), (1, 512), (2, 1024), (1, 1024))


def checkpoint_layers() -> list[tuple[str, str, str, int]]:
    """(Keras layer name, kernel weight name, kind, stride) of the 27 convolutions, in order."""
    out = []
    for n, (stride, _) in enumerate(LAYER_DEFS, start=1):
        if n == 1:
            out.append((f"layer{n}/conv", "kernel", "conv", stride))
        else:
            out.append((f"layer{n}/depthwise_conv", "depthwise_kernel", "depthwise", stride))
            out.append((f"layer{n}/pointwise_conv", "kernel", "conv", 1))
    return out


def read_keras_h5(path: Path) -> YamnetWeights:
    try:
        import h5py
    except ImportError:
        raise ModelError("reading yamnet.h5 needs h5py (it comes with TensorFlow: pip install -e '.[tools]')") \
            from None
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f  # a whole-model save nests the weights

        def tensor(layer: str, leaf: str) -> np.ndarray:
            try:
                return np.asarray(root[layer][f"{layer}/{leaf}:0"], np.float32)
            except KeyError:
                raise ModelError(f"{path}: no weight {layer}/{leaf}:0 (not YAMNet's Keras checkpoint yamnet.h5)") \
                    from None

        layers = []
        for name, kernel_name, kind, stride in checkpoint_layers():
            kernel = tensor(name, kernel_name)
            inv = 1.0 / np.sqrt(tensor(f"{name}/bn", "moving_variance") + BATCHNORM_EPSILON)
            bias = tensor(f"{name}/bn", "beta") - tensor(f"{name}/bn", "moving_mean") * inv
            if kernel.ndim != 4 or kernel.shape[2 if kind == "depthwise" else 3] != inv.shape[0]:
                raise ModelError(f"{path}: {name} has kernel shape {kernel.shape}, which does not fit YAMNet")
            folded = kernel * (inv[None, None, :, None] if kind == "depthwise" else inv[None, None, None, :])
            layers.append(ConvLayer(kind, folded.astype(np.float32), bias.astype(np.float32), stride,
                                    f"layer{len(layers)}_{kind}"))
        dense_kernel, dense_bias = tensor("logits", "kernel"), tensor("logits", "bias")
    if dense_kernel.shape != (1024, dense_bias.shape[0]):
        raise ModelError(f"{path}: classifier kernel shape {dense_kernel.shape} does not fit YAMNet")
    tensors = 4 * len(layers) + 2  # kernel, beta, mean, variance per layer; the classifier's kernel and bias
    return YamnetWeights(layers, dense_kernel, dense_bias, path, 0, tensors, "keras_h5", [])
