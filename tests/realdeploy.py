"""What the deploy tests share: the project wheel, an offline wheelhouse for this machine's Debian Python and the
default bundle (from the asset mirror), each made once per test run; and `python -m tools deploy` against the rig's
sshd devices (tools/rig/sshd.py, the ssh_rig fixture). The devices' interpreter is Debian's /usr/bin/python3, as on
a Raspberry Pi."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conftest import Result, run_cli

DEVICE_PYTHON = "/usr/bin/python3"
_MADE: dict = {}


@dataclass(frozen=True)
class Kit:
    wheel: Path
    wheelhouse: Path
    bundle: Path
    clip: Path  # a recording the test configs replay as their audio source


def kit(assets: Path) -> Kit:
    """Built on first use, then shared by every deploy test of this run."""
    if "kit" not in _MADE:
        from edge.model.assets import install_default_bundle
        from tools.deploy.wheelhouse import build_project_wheel
        folder = Path(tempfile.mkdtemp(prefix="edge-audio-deploy-kit-"))
        wheel = build_project_wheel(folder / "dist")
        bundle = install_default_bundle(folder / "bundle", assets)
        _MADE["kit"] = Kit(wheel, folder / "wheelhouse", bundle, assets / "audio" / "miaow_16k.wav")
    return _MADE["kit"]


def background_wav(assets: Path) -> Path:
    """A site's background for calibration: the devset clips that hold none of the pi4 profile's watched sounds
    (strict or lenient labels), end to end in one 16 kHz WAV (13 min); made once per test run."""
    if "background" not in _MADE:
        import csv

        import numpy as np

        from edge import firmware
        from edge.config import parse_config
        from edge.core.wavfile import read_wav, write_wav
        watched = parse_config(firmware.profile_text("pi4-usb-coral")).detector.allow
        from edge.model.labels import load_labels
        names = load_labels(assets / "models" / "yamnet_class_map.csv")
        indices = {str(names.index(label)) for label in watched}
        with open(assets / "devset" / "labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        clips = [assets / "devset" / "clips" / r["file"] for r in rows
                 if not indices & set(r["lenient_indices"].split(";") + r["audioset_indices"].split(";"))]
        audio = [read_wav(c) for c in clips]
        assert all(a.rate_hz == 16000 and a.channels == 1 for a in audio)
        path = Path(tempfile.mkdtemp(prefix="edge-audio-background-")) / "background.wav"
        write_wav(path, np.concatenate([a.samples[:, 0] for a in audio]), 16000)
        _MADE["background"] = path
    return _MADE["background"]


def silent_wav(folder: Path, seconds: float = 20.0) -> Path:
    """A muted microphone, as a recording."""
    import numpy as np

    from edge.core.wavfile import write_wav
    path = folder / "silent.wav"
    write_wav(path, np.zeros(int(16000 * seconds), np.int16), 16000)
    return path


def wav_settings(k: Kit, recording: Path | None = None) -> list[str]:
    """Board profiles capture from ALSA; the test devices replay a recording instead (the kit's clip, or this)."""
    return ["--set", "audio.source=wav", "--set", f"audio.file={recording or k.clip}", "--set",
            "audio.realtime=false"]


def deploy(rig, k: Kit, *args, offline: bool = True, timeout: float = 900) -> Result:
    extra = ["--wheelhouse", str(k.wheelhouse)] if offline else []
    return run_cli("deploy", *args, "--ssh-config", rig.ssh_config, "--wheel", k.wheel, "--python", DEVICE_PYTHON,
                   *extra, module="tools", timeout=timeout)


def current_id(prefix: Path) -> str | None:
    link = prefix / "current"
    return Path(link.readlink()).name if link.is_symlink() else None


def release_ids(prefix: Path) -> list[str]:
    folder = prefix / "releases"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def release_info(prefix: Path, rid: str) -> dict:
    return json.loads((prefix / "releases" / rid / "release.json").read_text())


def selftest_current(prefix: Path, *extra: str) -> dict:
    """`edge-audio selftest` of what is current, run the way the release step runs it."""
    exe = prefix / "current" / "venv" / "bin" / "edge-audio"
    proc = subprocess.run([str(exe), "selftest", "--config", str(prefix / "current" / "config.toml"), "--json",
                           *extra], capture_output=True, text=True, timeout=300, cwd="/")
    report = json.loads(proc.stdout)
    report["exit"] = proc.returncode
    return report
