"""ALSA adapter (pyalsaaudio). The import happens when a function needs it, never at module import."""

from __future__ import annotations

from pathlib import Path


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
