"""The daemon's configuration: one typed, validated, frozen tree, read once from a TOML file.

Every field has a type, a default, bounds where they matter and a description. Unknown keys, wrong types and
out-of-range values raise ConfigError naming the key and the file (exit 78: systemd does not restart on it).
Secrets are never in the file: the MQTT password comes from a file, a systemd credential or the environment.
"""

from __future__ import annotations

import os
import socket
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from .errors import ConfigError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]


def _f(default, doc: str, lo=None, hi=None, choices=None):
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DeviceConfig:
    id: str = _f("", "device id in MQTT topics and events (default: the host name)")


@dataclass(frozen=True)
class AudioConfig:
    source: str = _f("alsa", "where audio comes from", choices=("alsa", "wav", "stdin"))
    device: str = _f("default", "ALSA capture PCM name (by name, not card index: it survives re-plugging)")
    rate_hz: int = _f(16000, "capture rate asked for; anything else is resampled to 16 kHz", 8000, 192000)
    channels: int = _f(1, "capture channels (downmixed to mono)", 1, 8)
    format: str = _f("S16_LE", "ALSA sample format", choices=("S16_LE", "S32_LE"))
    period_frames: int = _f(1024, "frames per ALSA period (one read)", 64, 8192)
    file: str = _f("", "WAV file for source = 'wav'")
    realtime: bool = _f(True, "pace a WAV replay at real time")
    loop: bool = _f(False, "replay the WAV file forever")
    stall_seconds: float = _f(5.0, "no audio for this long counts as a stalled device: reopen it", 0.5, 600)
    reopen_min_seconds: float = _f(1.0, "first delay before reopening a lost device", 0.05, 600)
    reopen_max_seconds: float = _f(30.0, "longest delay between reopen attempts", 0.05, 3600)


@dataclass(frozen=True)
class ModelConfig:
    path: str = _f("", "model bundle or .tflite (default: the installed bundle)")
    labels: str = _f("", "class map (default: the bundle's)")
    delegate: str = _f("auto", "auto | cpu | edgetpu[:usb[:N]|:pci[:N]]")
    threads: int = _f(1, "CPU interpreter threads", 1, 16)
    backend: str = _f("", "interpreter preference, comma separated (default: ai_edge_litert first)")
    hop_seconds: float = _f(0.48, "seconds between windows", 0.05, 5.0)


@dataclass(frozen=True)
class DetectorConfig:
    threshold: float = _f(0.5, "default score that starts an event", 0.0, 1.0)
    off_ratio: float = _f(0.7, "an event ends below threshold x off_ratio (hysteresis)", 0.0, 1.0)
    thresholds: dict = _f({}, "per-label start thresholds, by display name")
    allow: list = _f([], "labels to watch, by display name (empty: every label not denied)")
    deny: list = _f([], "labels never reported")
    smoothing_windows: int = _f(2, "moving average over this many windows", 1, 50)
    min_duration_seconds: float = _f(0.0, "a score must stay up this long before 'start'", 0.0, 60.0)
    hold_seconds: float = _f(1.0, "a score must stay down this long before 'end'", 0.0, 600.0)
    cooldown_seconds: float = _f(0.0, "after 'end', no new 'start' of that label for this long", 0.0, 3600.0)
    min_level_dbfs: float = _f(-120.0, "skip inference when the window is quieter than this (-120: never)",
                               -120.0, 0.0)


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = _f(True, "publish to an MQTT broker")
    host: str = _f("localhost", "broker host")
    port: int = _f(1883, "broker port", 1, 65535)
    protocol: str = _f("5", "MQTT protocol version", choices=("5", "3.1.1"))
    prefix: str = _f("edge-audio", "topic prefix: <prefix>/<device id>/...")
    client_id: str = _f("", "client id (default: edge-audio-<device id>)")
    username: str = _f("", "user name")
    password_file: str = _f("", "file holding the password (else the systemd credential 'mqtt_password', "
                                "else $EDGE_AUDIO_MQTT_PASSWORD)")
    tls: bool = _f(False, "connect with TLS")
    ca_file: str = _f("", "CA certificate to trust (default: the system's)")
    cert_file: str = _f("", "client certificate (mutual TLS)")
    key_file: str = _f("", "client key (mutual TLS)")
    keepalive_seconds: int = _f(30, "MQTT keepalive", 5, 3600)
    reconnect_min_seconds: float = _f(1.0, "first reconnect delay (doubles, with jitter)", 0.05, 600)
    reconnect_max_seconds: float = _f(60.0, "longest reconnect delay", 0.05, 3600)
    outbox_max: int = _f(1000, "events kept while the broker is unreachable", 1, 1_000_000)
    outbox_policy: str = _f("drop_oldest", "what a full outbox drops", choices=("drop_oldest", "drop_newest"))
    outbox_file: str = _f("", "keep undelivered events here across restarts (JSON lines; empty: memory only)")
    scores: bool = _f(False, "publish a rate-limited top-k score stream on <prefix>/<id>/scores")
    scores_top_k: int = _f(5, "classes in each scores message", 1, 521)
    scores_interval_seconds: float = _f(1.0, "least time between scores messages", 0.1, 3600)
    homeassistant: bool = _f(True, "publish Home Assistant MQTT discovery for the watched labels")
    discovery_prefix: str = _f("homeassistant", "Home Assistant discovery prefix")


@dataclass(frozen=True)
class MetricsConfig:
    interval_seconds: float = _f(30.0, "how often metrics are published and logged", 1.0, 86400)


@dataclass(frozen=True)
class Config:
    path: str
    device: DeviceConfig
    audio: AudioConfig
    model: ModelConfig
    detector: DetectorConfig
    mqtt: MqttConfig
    metrics: MetricsConfig

    @property
    def device_id(self) -> str:
        return self.device.id or socket.gethostname().split(".")[0]


SECTIONS = {"device": DeviceConfig, "audio": AudioConfig, "model": ModelConfig, "detector": DetectorConfig,
            "mqtt": MqttConfig, "metrics": MetricsConfig}


def _check(value, f, where: str):
    kind = type(f.default) if f.default is not MISSING else type(f.default_factory())
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
                 dict: "a table"}
        raise ConfigError(f"{where} must be {names[kind]} (got {value!r})")
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where} must be one of {', '.join(map(repr, meta['choices']))} (got {value!r})")
    if meta.get("lo") is not None and not meta["lo"] <= value <= meta["hi"]:
        raise ConfigError(f"{where} must be between {meta['lo']} and {meta['hi']} (got {value!r})")
    return value


def _section(cls, table, name: str, path: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"{path}: unknown key '{name}.{key}' (known: {', '.join(known)})")
    values = {k: _check(v, known[k], f"{path}: {name}.{k}") for k, v in table.items()}
    return cls(**values)


def parse_config(text: str, path: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(f"{path}: unknown section '{key}' (known: {', '.join(SECTIONS)})")
    sections = {name: _section(cls, data.get(name, {}), name, path) for name, cls in SECTIONS.items()}
    cfg = Config(path=path, **sections)
    _cross_checks(cfg)
    return cfg


def _cross_checks(cfg: Config) -> None:
    d, a = cfg.detector, cfg.audio
    for name, value in d.thresholds.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{cfg.path}: detector.thresholds.{name!r} must be a number between 0 and 1")
    for key in ("allow", "deny"):
        if not all(isinstance(v, str) for v in getattr(d, key)):
            raise ConfigError(f"{cfg.path}: detector.{key} must be a list of label names")
    if a.source == "wav" and not a.file:
        raise ConfigError(f"{cfg.path}: audio.file is required when audio.source = 'wav'")
    if a.reopen_min_seconds > a.reopen_max_seconds:
        raise ConfigError(f"{cfg.path}: audio.reopen_min_seconds is larger than audio.reopen_max_seconds")
    m = cfg.mqtt
    if bool(m.cert_file) != bool(m.key_file):
        raise ConfigError(f"{cfg.path}: mqtt.cert_file and mqtt.key_file go together")


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from None
    return parse_config(text, str(path))


def mqtt_password(cfg: MqttConfig, config_path: str = "") -> str | None:
    """The MQTT password from the password file, the systemd credential or the environment (in that order)."""
    if cfg.password_file:
        try:
            return Path(cfg.password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{config_path}: mqtt.password_file {cfg.password_file}: {exc.strerror}") from None
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / "mqtt_password").is_file():
        return (Path(creds) / "mqtt_password").read_text().strip()
    return os.environ.get("EDGE_AUDIO_MQTT_PASSWORD") or None


def describe() -> str:
    """Every key with its default and description (for --help and docs)."""
    lines = []
    for name, cls in SECTIONS.items():
        lines.append(f"[{name}]")
        for f in fields(cls):
            default = f.default if f.default is not MISSING else f.default_factory()
            lines.append(f"  {f.name} = {default!r:<14} # {f.metadata['doc']}")
    return "\n".join(lines)
