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


def wav_settings(k: Kit, recording: Path | None = None, live: bool = False) -> list[str]:
    """Board profiles capture from ALSA; the test devices replay a recording instead (the kit's clip, or this):
    as fast as it reads, or `live`: at real time, looped, as a microphone never ends (the release's daemon runs
    until it is stopped)."""
    paced = ["audio.realtime=true", "audio.loop=true"] if live else ["audio.realtime=false"]
    return ["--set", "audio.source=wav", "--set", f"audio.file={recording or k.clip}",
            *[arg for item in paced for arg in ("--set", item)]]


def deploy(rig, k: Kit, *args, offline: bool = True, timeout: float = 900, python: str = DEVICE_PYTHON) -> Result:
    extra = ["--wheelhouse", str(k.wheelhouse)] if offline else []
    return run_cli("deploy", *args, "--ssh-config", rig.ssh_config, "--wheel", k.wheel, "--python", python,
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


def release_daemon_online(prefix: Path, broker, settings: list[str] = ()) -> dict:
    """The current release's daemon, started as its unit starts it (PREFIX/current/venv/bin/edge-audio run with
    EDGE_AUDIO_HOME=PREFIX/state, the stored MQTT credential), until `broker` holds its retained status `online`
    (what Home Assistant sees); then SIGTERM. Its exit status and status messages; AssertionError with the end of
    its log when it never came online. `settings` (KEY=VALUE, as --set takes them) run it on a copy of the release's
    config with those changed, e.g. a looped recording where the release calibrated on one that ends."""
    import os
    import signal

    from edge.config import load_config
    from tools.rig.mqtt import Subscriber
    config = prefix / "current" / "config.toml"
    if settings:
        from edge.app.release.compose import compose_config
        changed = prefix / "daemon-config.toml"
        changed.write_text(compose_config(config.read_text(), None, list(settings)))
        config = changed
    cfg = load_config(config)
    topic = f"{cfg.mqtt.prefix}/{cfg.device_id}/status"
    secret = prefix / "etc" / "mqtt_password"
    password = secret.read_text().strip() if secret.is_file() else None
    env = dict(os.environ, EDGE_AUDIO_HOME=str(prefix / "state"), OPENBLAS_NUM_THREADS="1")
    if password:
        env["CREDENTIALS_DIRECTORY"] = str(secret.parent)
    watch = Subscriber(broker.port, topic, cfg.mqtt.username, password)
    live = lambda s: [m.payload for m in s.received() if not m.retain]  # noqa: E731
    log = prefix / "daemon.log"
    try:
        with open(log, "w") as err:
            proc = subprocess.Popen([str(prefix / "current" / "venv" / "bin" / "edge-audio"), "run", "--config",
                                     str(config)], env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=err)
            try:
                # live, not the retained status an earlier daemon left (a live message comes without the flag)
                online = watch.wait(lambda s: b"online" in live(s) or proc.poll() is not None, 60)
                assert online and proc.poll() is None, f"not online: {log.read_text()[-600:]}"
                late = Subscriber(broker.port, topic, cfg.mqtt.username, password)  # connects after the fact
                retained = late.wait(lambda s: s.retained().get(topic) == b"online", 10)
                late.close()
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        watch.wait(lambda s: live(s)[-1:] == [b"offline"], 10)
        return {"retained": retained, "exit": code, "status": [p.decode() for p in live(watch)],
                "log": log.read_text()}
    finally:
        watch.close()
