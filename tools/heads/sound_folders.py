"""The recordings train-head learns from: one folder per class, an optional background folder, a held-out split
by file (never by window), and one-line errors for every way a folder or a recording cannot be used."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.core.errors import InputError
from edge.core.wavfile import read_wav
from edge.sinks.topics import slug

from ..audio_windows import wav_files

BACKGROUND = "background"


@dataclass
class Dataset:
    files: dict[str, list[Path]]  # class name -> recordings

    @property
    def classes(self) -> list[str]:
        return sorted(self.files, key=lambda c: (c == BACKGROUND, c))


def discover(data: Path, background: Path | None = None, option: str = "--data") -> Dataset:
    """Class folders under `data` (and the background recordings), or InputError with one line."""
    if not data.is_dir():
        raise InputError(f"{option} {data}: no such folder")
    loose = sorted(p.name for p in data.iterdir() if p.is_file() and p.suffix.lower() == ".wav")
    if loose:
        raise InputError(f"{option} {data}: recordings go in one folder per class ({data}/<class name>/*.wav); "
                         f"found {loose[0]} at the top")
    files: dict[str, list[Path]] = {}
    for folder in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
        wavs = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() == ".wav")
        if not wavs:
            raise InputError(f"{folder}: class folder holds no .wav files")
        files[folder.name] = wavs
    if background is not None:
        files[BACKGROUND] = files.get(BACKGROUND, []) + wav_files([background])
    if not files:
        raise InputError(f"{option} {data}: no class folders ({data}/<class name>/*.wav)")
    _refuse_shared_ids(list(files))
    return Dataset(files)


def _refuse_shared_ids(names: list[str]) -> None:
    """Two class names with one id (case or punctuation apart: Door and door, door-bell and door_bell) would share
    a state topic and a Home Assistant entity on the device, each overwriting the other's."""
    ids: dict[str, str] = {}
    for name in names:
        other = ids.setdefault(slug(name), name)
        if other != name:
            raise InputError(f"class folders {other!r} and {name!r} would share the id {slug(name)!r} in MQTT "
                             "topics and Home Assistant: rename or merge one of them")


def check_readable(files: list[Path]) -> None:
    bad = []
    for f in files:
        try:
            read_wav(f)
        except InputError as exc:
            bad.append(str(exc))
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise InputError(f"{len(bad)} unreadable WAV file{'s' if len(bad) > 1 else ''}: {'; '.join(bad[:3])}{more}")


def split(dataset: Dataset, val_fraction: float, seed: int) -> tuple[list, list]:
    """(train, held out): [(file, class index)], each class split by file with a seeded shuffle."""
    train, held = [], []
    for c, name in enumerate(dataset.classes):
        files = dataset.files[name]
        if len(files) < 2:
            raise InputError(f"class {name!r} has one recording ({files[0].name}); it needs at least two (one is "
                             "held out for measuring), or pass --val DIR")
        order = np.random.default_rng([seed, int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)]) \
            .permutation(len(files))
        n_held = min(len(files) - 1, max(1, round(len(files) * val_fraction)))
        held += [(files[i], c) for i in sorted(order[:n_held])]
        train += [(files[i], c) for i in sorted(order[n_held:])]
    return train, held
