"""Embeddings for train-head: the kit's own front end and the base model's network, cached by file hash.

    Backbone.open(base)     a patch-input int8 YAMNet (a bundle from `tools build`, or Coral's twin) read back as a
                            float Keras network: log-mel patches -> the 1024-d embedding (mean of the last conv
                            layer), every activation clipped at 6 as in the int8 model
    Augmenter               time shift, gain and mixing with background audio, seeded per file and copy
    EmbeddingStore          [windows, 1024] and each window's level per (file content, backbone, hop, variant)

Windows are framed by the kit's window loop and patches made by its front end, as on the device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.core.detector import level_dbfs
from edge.core.errors import ModelError
from edge.core.frontend import FrontEndParams
from edge.core.stream import HOP_SECONDS, WindowLoop, hop_samples_for, recording_windows
from edge.core.wavfile import read_wav
from edge.model.bundle import resolve_model, sha256_file

from ..audio_windows import patches_of
from ..model.yamnet_weights import YamnetWeights, bounded, read_yamnet_layers

EMBEDDING_SIZE = 1024
RATE_HZ = FrontEndParams().sample_rate_hz
AUGMENT_RECIPE = "v1"  # part of every cache key: change it when the augmentation changes


def file_digest(path: Path) -> str:
    return sha256_file(path)[:20]


def mono_16k(path: Path) -> np.ndarray:
    """A WAV file as 16 kHz mono int16, through the kit's own downmix and resampler."""
    audio = read_wav(path)
    block = 1600
    loop = WindowLoop(block, block, audio.rate_hz, audio.channels, RATE_HZ)
    pieces = [np.rint(w * 32768.0).clip(-32768, 32767).astype(np.int16)
              for w, _ in recording_windows(audio.samples, loop)]
    frames = int(round(audio.frames * RATE_HZ / audio.rate_hz))  # without the loop's end padding
    return np.concatenate(pieces)[:frames] if pieces else np.zeros(0, np.int16)


def signal_windows(signal: np.ndarray, hop_seconds: float = HOP_SECONDS) -> np.ndarray:
    """[windows, 15600] float32 of a 16 kHz mono int16 signal, framed and end-padded as classify frames files."""
    p = FrontEndParams()
    loop = WindowLoop(p.window_samples, hop_samples_for(hop_seconds, RATE_HZ), RATE_HZ, 1, RATE_HZ)
    windows = [w.copy() for w, _ in recording_windows(signal, loop)]
    return np.stack(windows) if windows else np.zeros((0, p.window_samples), np.float32)


@dataclass
class Backbone:
    """The base model's network up to the embedding, in float, fed by the kit's front end."""

    weights: YamnetWeights  # bounded: every layer's activations within [0, 6], ReLU6 fused
    model_path: Path
    identity: str  # sha256 prefix of the base model file: part of every cache key
    name: str
    manifest: dict
    _embed: object = field(default=None, init=False, repr=False)  # the compiled Keras call, made on first use

    @classmethod
    def open(cls, base: str | Path) -> "Backbone":
        source = resolve_model(base)
        cpu = source.models.cpu
        if cpu is None:
            raise ModelError(f"{base}: no CPU model to read the network from")
        weights = read_yamnet_layers(cpu)
        if weights.kind != "patch_int8_tflite":
            raise ModelError(f"{base}: the base must be a full-int8 log-mel patch YAMNet (a bundle made by "
                             "'python -m tools build', or Coral's yamnet_spectra_in.tflite)")
        # the int8 model clips every layer (at 6, or where its int8 range ends): make that exactly ReLU6
        weights = bounded(weights, [weights.cap(i) for i in range(len(weights.layers))])
        manifest = source.bundle.manifest if source.bundle is not None else {}
        return cls(weights, cpu, sha256_file(cpu)[:16], source.name, manifest)

    def embed(self, patches: np.ndarray, batch: int = 64) -> np.ndarray:
        """[patches, 96, 64] log-mel -> [patches, 1024]."""
        if self._embed is None:
            from ..model import quantize as q
            tf = q.load_tensorflow()
            inp, _, embedding = q.keras_trunk(self.weights, relu6=True, batch_size=None)
            model = tf.keras.Model(inp, embedding, name="yamnet_embedding")
            self._embed = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        out = np.zeros((len(patches), EMBEDDING_SIZE), np.float32)
        for i in range(0, len(patches), batch):
            out[i:i + batch] = self._embed(patches[i:i + batch].astype(np.float32)).numpy()
        return out


@dataclass(frozen=True)
class Augmenter:
    """Random but reproducible changes to a training recording (one RNG per file content, copy and seed)."""

    seed: int = 0
    gain_db: tuple = (-12.0, 6.0)
    snr_db: tuple = (0.0, 15.0)  # mixing: foreground level over background level
    mix_probability: float = 0.7

    def apply(self, signal: np.ndarray, key: str, copy: int, backgrounds: list[np.ndarray],
              hop_seconds: float = HOP_SECONDS) -> np.ndarray:
        digest = hashlib.sha256(f"{key}:{copy}:{self.seed}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        x = signal.astype(np.float32)
        shift = int(rng.integers(0, hop_samples_for(hop_seconds, RATE_HZ)))  # windows land elsewhere in time
        x = x[shift:] if x.size > shift + RATE_HZ // 10 else x
        x = x * np.float32(10 ** (rng.uniform(*self.gain_db) / 20))
        if backgrounds and rng.random() < self.mix_probability:
            bg = backgrounds[int(rng.integers(len(backgrounds)))].astype(np.float32)
            if bg.size:
                reps = int(np.ceil((x.size + bg.size) / bg.size))
                start = int(rng.integers(bg.size))
                bg = np.tile(bg, reps)[start:start + x.size]
                fg_rms, bg_rms = np.sqrt(np.mean(x ** 2)) + 1e-3, np.sqrt(np.mean(bg ** 2)) + 1e-3
                x = x + bg * np.float32(fg_rms / bg_rms / 10 ** (rng.uniform(*self.snr_db) / 20))
        return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


@dataclass
class Embedded:
    embeddings: np.ndarray  # [windows, 1024]
    levels_dbfs: np.ndarray  # [windows]: each window's RMS level (digital silence: -120)


class EmbeddingStore:
    """Embeddings computed once per (file content, backbone, hop, variant) and kept as .npy files, with each
    window's level beside them (a silent window says nothing about the class of its recording)."""

    def __init__(self, folder: Path, backbone: Backbone, hop_seconds: float = HOP_SECONDS):
        self.folder = folder
        self.backbone = backbone
        self.hop_seconds = hop_seconds
        self.computed = 0
        self.reused = 0
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str, variant: str) -> Path:
        return self.folder / f"{digest}-{self.backbone.identity}-h{self.hop_seconds:g}-{variant}-e2.npy"

    def get(self, path: Path, variant: str = "orig", make_signal=None) -> Embedded:
        """The embeddings of one file as it is ("orig"), or of a variant whose signal make_signal(int16 16 kHz
        mono, file digest) returns; `variant` must name everything that changes that signal."""
        digest = file_digest(path)
        return self.of_signal(lambda: make_signal(mono_16k(path), digest) if make_signal else mono_16k(path),
                              digest, variant)

    def of_signal(self, make, digest: str, variant: str) -> Embedded:
        """Cached embeddings of the signal make() returns (16 kHz mono int16), keyed by digest and variant."""
        cached = self._path(digest, variant)
        if cached.is_file():
            try:
                both = np.load(cached)
                self.reused += 1
                return Embedded(both[:, :EMBEDDING_SIZE], both[:, EMBEDDING_SIZE])
            except (OSError, ValueError, IndexError):
                pass  # unreadable: compute it again
        windows = signal_windows(make(), self.hop_seconds)
        both = np.concatenate([self.backbone.embed(patches_of(windows)),
                               np.array([[level_dbfs(w)] for w in windows], np.float32).reshape(-1, 1)], axis=1)
        tmp = cached.with_suffix(".tmp.npy")
        np.save(tmp, both)
        tmp.replace(cached)
        self.computed += 1
        return Embedded(both[:, :EMBEDDING_SIZE], both[:, EMBEDDING_SIZE])


def quiet_signals(seconds: float = 2.0) -> dict[str, np.ndarray]:
    """Digital silence and white noise at -80, -70 and -60 dBFS: what a microphone hears when nothing happens."""
    rng = np.random.default_rng(0)
    n = int(seconds * RATE_HZ)
    out = {"silence": np.zeros(n, np.int16)}
    for level in (-80, -70, -60):
        out[f"noise{level}"] = np.rint(rng.normal(0, 32768 * 10 ** (level / 20), n)).clip(-32768, 32767) \
            .astype(np.int16)
    return out
