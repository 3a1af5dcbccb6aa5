"""Audio sources: ALSA capture, WAV replay, raw PCM on stdin (one file each), behind the Source interface and the
capture thread in capture.py."""

from __future__ import annotations

from ..config import AudioConfig


def make_source(cfg: AudioConfig):
    """The source an [audio] section names."""
    if cfg.source == "alsa":
        from .alsa import AlsaSource
        return AlsaSource(cfg)
    if cfg.source == "wav":
        from .wav import WavSource
        return WavSource(cfg)
    if cfg.source == "url":
        from .url import UrlSource
        return UrlSource(cfg)
    from .stdin import StdinSource
    return StdinSource(cfg)
