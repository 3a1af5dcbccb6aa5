"""The small classifier trained on YAMNet embeddings: [dropout] -> [dense + ReLU -> dropout] -> dense -> softmax.

Class balancing weighs each class's windows by total / (classes x that class's windows), so a class with few
recordings counts as much as one with many. Training is seeded and reproducible on one machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge.core.console import Progress


@dataclass(frozen=True)
class HeadParams:
    epochs: int = 40
    hidden: int = 0  # 0: one dense layer on the embedding
    dropout: float = 0.3
    learning_rate: float = 1e-3
    batch_size: int = 32
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return {c: float(len(labels) / (n_classes * counts[c])) if counts[c] else 0.0 for c in range(n_classes)}


def build_head(n_classes: int, params: HeadParams, embedding_size: int = 1024):
    from ..model.quantize import load_tensorflow
    tf = load_tensorflow()
    layers = tf.keras.layers
    inp = layers.Input(shape=(embedding_size,), name="embedding")
    x = layers.Dropout(params.dropout, seed=params.seed)(inp) if params.dropout else inp
    if params.hidden:
        x = layers.Dense(params.hidden, activation="relu", name="hidden")(x)
        if params.dropout:
            x = layers.Dropout(params.dropout, seed=params.seed + 1)(x)
    out = layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return tf.keras.Model(inp, out, name="head")


def fit_head(x: np.ndarray, y: np.ndarray, n_classes: int, params: HeadParams, progress: bool = True):
    """Train on [samples, 1024] embeddings and class indices; returns the Keras model."""
    from ..model.quantize import load_tensorflow
    tf = load_tensorflow()
    tf.keras.utils.set_random_seed(params.seed)
    model = build_head(n_classes, params, x.shape[1])
    model.compile(optimizer=tf.keras.optimizers.Adam(params.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    shown = Progress(params.epochs)

    class Epochs(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if progress:
                shown.show(epoch + 1, f"  training: epoch {epoch + 1}/{params.epochs}, loss "
                                      f"{logs.get('loss', 0):.4f}, accuracy {logs.get('accuracy', 0):.3f}")

    with shown:
        model.fit(x.astype(np.float32), y.astype(np.int64), epochs=params.epochs, batch_size=params.batch_size,
                  class_weight=class_weights(y, n_classes), shuffle=True, verbose=0, callbacks=[Epochs()])
    return model


def predict(model, x: np.ndarray) -> np.ndarray:
    """[samples, classes] softmax scores."""
    from ..model.quantize import load_tensorflow
    tf = load_tensorflow()
    return model(tf.constant(x.astype(np.float32)), training=False).numpy()
