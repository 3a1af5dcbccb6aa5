"""The windows and log-mel patches of WAV files, framed exactly as `edge-audio classify` frames them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.core.console import Progress
from edge.core.errors import InputError
from edge.core.frontend import FrontEndParams, LogMelFrontEnd
from edge.core.stream import HOP_SECONDS, WindowLoop, hop_samples_for, recording_windows
from edge.core.wavfile import read_wav


def file_windows(path: Path, hop_seconds: float = HOP_SECONDS,
                 params: FrontEndParams = FrontEndParams()) -> np.ndarray:
    """[windows, 15600] float32: every window of one WAV file (resampled, downmixed, end-padded), through the
    same window loop as `edge-audio classify` and the daemon."""
    audio = read_wav(path)
    loop = WindowLoop(params.window_samples, hop_samples_for(hop_seconds, params.sample_rate_hz), audio.rate_hz,
                      audio.channels, params.sample_rate_hz, grid_samples=params.stft_hop_samples)
    windows = [window.copy() for window, _ in recording_windows(audio.samples, loop)]
    return np.stack(windows) if windows else np.zeros((0, params.window_samples), np.float32)


def patches_of(windows: np.ndarray, params: FrontEndParams = FrontEndParams()) -> np.ndarray:
    """[windows, 96, 64] log-mel patches with the project's front end."""
    frontend = LogMelFrontEnd(params)
    return np.stack([frontend.compute(np.ascontiguousarray(w)).copy() for w in windows]) if len(windows) \
        else np.zeros((0, params.patch_frames, params.mel_bands), np.float32)


def wav_files(paths: list[str | Path]) -> list[Path]:
    """WAV files named directly or found (recursively, sorted) in the folders given."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() == ".wav" and f.is_file())
            if not found:
                raise InputError(f"{p}: folder holds no .wav files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return files


def collect(files: list[Path], hop_seconds: float = HOP_SECONDS, what: str = "windows",
            progress: bool = True) -> tuple[np.ndarray, list[tuple[Path, int]]]:
    """All windows of `files` stacked, and (file, window count) per file."""
    out, counts = [], []
    with Progress(len(files)) as shown:
        for i, f in enumerate(files):
            w = file_windows(f, hop_seconds)
            out.append(w)
            counts.append((f, len(w)))
            if progress:
                shown.show(i + 1, f"  reading {what}: {i + 1}/{len(files)} files")
    return (np.concatenate(out) if out else np.zeros((0, FrontEndParams().window_samples), np.float32)), counts
