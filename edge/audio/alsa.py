"""ALSA capture through pyalsaaudio, and the device listing `doctor` shows. pyalsaaudio is imported when a source
is created or a function needs it, never at module import."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import AudioConfig
from ..core.errors import ConfigError
from .capture import EMPTY, SourceLost


def capture_devices() -> tuple[list[str], str]:
    """(capture PCM names, note). The note says why the list may be empty."""
    try:
        import alsaaudio
    except ImportError:
        return [], "pyalsaaudio is not installed (pip install 'edge-audio[device]')"
    try:
        names = list(alsaaudio.pcms(alsaaudio.PCM_CAPTURE))
    except Exception as exc:  # ALSA's config errors surface here as ALSAAudioError
        return [], f"ALSA error: {exc}"
    return names, ""


def sound_cards(proc: str = "/proc/asound/cards") -> list[str]:
    try:
        text = Path(proc).read_text()
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line[:3].strip().isdigit()]


class AlsaSource:
    """Capture from an ALSA PCM by name through pyalsaaudio."""

    def __init__(self, cfg: AudioConfig):
        try:
            import alsaaudio
        except ImportError:
            raise ConfigError("audio.source = 'alsa' needs pyalsaaudio: pip install 'edge-audio[device]' "
                              "(it builds against libasound2-dev)") from None
        self._alsa = alsaaudio
        self.cfg = cfg
        self.name = f"ALSA '{cfg.device}'"
        self.rate_hz = cfg.rate_hz
        self.channels = cfg.channels
        self.overruns = 0
        self._pcm = None
        self._s32 = cfg.format == "S32_LE"

    def open(self) -> None:
        a, cfg = self._alsa, self.cfg
        fmt = a.PCM_FORMAT_S32_LE if self._s32 else a.PCM_FORMAT_S16_LE
        try:
            self._pcm = a.PCM(type=a.PCM_CAPTURE, mode=a.PCM_NORMAL, device=cfg.device, channels=cfg.channels,
                              rate=cfg.rate_hz, format=fmt, periodsize=cfg.period_frames, periods=4)
            info = self._pcm.info()
        except a.ALSAAudioError as exc:
            self._pcm = None
            raise SourceLost(f"cannot open {self.name}: {exc}") from None
        # ALSA may give another rate or channel count than asked: use what the device opened with
        self.rate_hz = int(info.get("rate", cfg.rate_hz))
        self.channels = int(info.get("channels", cfg.channels))

    def read(self) -> np.ndarray | None:
        try:
            n, data = self._pcm.read()
        except self._alsa.ALSAAudioError as exc:
            raise SourceLost(f"{self.name}: {exc}") from None
        if n < 0:  # -EPIPE: overrun; pyalsaaudio has re-prepared the device
            self.overruns += 1
            return EMPTY
        if n == 0:
            return EMPTY
        pcm = np.frombuffer(data, "<i2")  # a view of this read's own bytes: chunks queued for the loop stay intact
        # S32_LE: the high 16 bits of each little-endian 32-bit sample (what >> 16 keeps), without a copy
        return pcm[1::2] if self._s32 else pcm

    def close(self) -> None:
        if self._pcm is not None:
            try:
                self._pcm.close()
            except Exception:
                pass
            self._pcm = None
