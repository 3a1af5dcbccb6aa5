"""Where edge-audio keeps its files on a machine, in one place. Each folder is worked out when asked for (the
environment is read then, never at import):

    state   the event spool, the site calibration   $STATE_DIRECTORY (systemd's StateDirectory=; the first one),
                                                    else $EDGE_AUDIO_HOME, else $XDG_STATE_HOME/edge-audio or
                                                    ~/.local/state/edge-audio
    data    installed model bundles                 $EDGE_AUDIO_HOME, else $XDG_DATA_HOME/edge-audio or
                                                    ~/.local/share/edge-audio
    cache   Edge TPU probe verdicts                 $EDGE_AUDIO_HOME/cache, else $XDG_CACHE_HOME/edge-audio or
                                                    ~/.cache/edge-audio

$EDGE_AUDIO_HOME puts everything under one folder (a release's state folder, a test's temporary one).
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "edge-audio"


def _home() -> Path | None:
    home = os.environ.get("EDGE_AUDIO_HOME")
    return Path(home) if home else None


def _xdg(variable: str, *fallback: str) -> Path:
    """$variable/edge-audio, else ~/<fallback>/edge-audio (an empty variable counts as unset, as XDG says)."""
    return Path(os.environ.get(variable) or os.path.join(os.path.expanduser("~"), *fallback)) / APP


def state_directory() -> Path:
    """State that outlives a release: the spool and the site calibration."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state)
    return _home() or _xdg("XDG_STATE_HOME", ".local", "state")


def data_home() -> Path:
    """Installed bundles (models/<name>)."""
    return _home() or _xdg("XDG_DATA_HOME", ".local", "share")


def cache_dir() -> Path:
    """What can be worked out again: the Edge TPU probe's verdicts."""
    home = _home()
    return home / "cache" if home else _xdg("XDG_CACHE_HOME", ".cache")
