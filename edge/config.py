"""The daemon's configuration: one typed, validated, frozen tree, read once from a TOML file.

Every field has a type, a default, bounds where they matter and a description. Unknown keys, wrong types and
out-of-range values raise ConfigError naming the key and the file (exit 78: systemd does not restart on it).
Secrets are never in the file: the MQTT password comes from a file, a systemd credential or the environment.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, fields
from pathlib import Path

from .core.clipparams import ClipParams
from .core.detector import DetectorParams
from .core.errors import ConfigError, InputError
from .core.files import file_kind, read_text
from .core.names import (MAX_ID_CHARS, MAX_LABEL_CHARS, MAX_PREFIX_CHARS, MAX_USERNAME_CHARS, host_problem, shown,
                         text_problem, topic_problem)
from .core.params import default_of, param
from .core.paths import state_directory
from .settings import MAX_TOML_DEPTH, read_toml as _read_toml, section
from .core.stream import HOP_RANGE_SECONDS, HOP_SECONDS
from .core.tomltext import value as toml_value
from .sourceconfig import AudioConfig, CalibrationConfig, SourceConfig, parse_sources, with_source

__all__ = ["AudioConfig", "CalibrationConfig", "Config", "SourceConfig", "load_config", "parse_config"]


@dataclass(frozen=True)
class DeviceConfig:
    id: str = param("", "device id in MQTT topics and events (default: the host name)")
    board: str = param("", "the board profile this config came from: the device model in Home Assistant")


@dataclass(frozen=True)
class ModelConfig:
    path: str = param("", "model bundle or .tflite (default: the installed bundle)")
    labels: str = param("", "class map (default: the bundle's)")
    delegate: str = param("auto", "auto | cpu | edgetpu[:usb[:N]|:pci[:N]]")
    threads: int = param(1, "CPU interpreter threads", 1, 16)
    backend: str = param("", "interpreter preference, comma separated (default: ai_edge_litert first)")
    hop_seconds: float = param(HOP_SECONDS, "seconds between windows", *HOP_RANGE_SECONDS)


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = param(True, "publish to an MQTT broker")
    host: str = param("localhost", "broker host")
    port: int = param(1883, "broker port", 1, 65535)
    protocol: str = param("5", "MQTT protocol version", choices=("5", "3.1.1"))
    prefix: str = param("edge-audio", "topic prefix: <prefix>/<device id>/...")
    client_id: str = param("", "client id (default: edge-audio-<device id>)")
    username: str = param("", "user name")
    password_file: str = param("", "file holding the password (else the systemd credential 'mqtt_password', "
                                "else $EDGE_AUDIO_MQTT_PASSWORD)")
    tls: bool = param(False, "connect with TLS")
    ca_file: str = param("", "CA certificate to trust (default: the system's)")
    cert_file: str = param("", "client certificate (mutual TLS)")
    key_file: str = param("", "client key (mutual TLS)")
    keepalive_seconds: int = param(30, "MQTT keepalive", 5, 3600)
    reconnect_min_seconds: float = param(1.0, "first reconnect delay after a drop (doubles, with jitter)", 0.05, 600)
    reconnect_max_seconds: float = param(10.0, "longest reconnect delay (with jitter: 0.5-1 x this); the longest "
                                               "wait between a broker's return and the reconnection", 0.05, 3600)
    outbox_max: int = param(10000, "undelivered events kept (in the spool) while the broker is unreachable", 1,
                            1_000_000)
    outbox_policy: str = param("drop_oldest", "what a full outbox drops", choices=("drop_oldest", "drop_newest"))
    spool_file: str = param("", "crash-safe spool of undelivered and open events (SQLite); empty: spool.db in "
                                "$STATE_DIRECTORY, $EDGE_AUDIO_HOME or ~/.local/state/edge-audio; 'none': memory only")
    scores: bool = param(False, "publish a rate-limited top-k score stream on <prefix>/<id>/scores")
    scores_top_k: int = param(5, "classes in each scores message", 1, 521)
    scores_interval_seconds: float = param(1.0, "least time between scores messages", 0.1, 3600)
    homeassistant: bool = param(True, "publish Home Assistant MQTT discovery for the watched labels")
    top_hold_seconds: float = param(3.0, "a new top class is published once it has held this long (fewer "
                                         "retained updates for Home Assistant's recorder); 0: every change", 0, 3600)
    discovery_prefix: str = param("homeassistant", "Home Assistant discovery prefix")
    clips: bool = param(False, "publish each kept clip on <prefix>/<id>/clips/<event id> (QoS 1, not retained)")
    clip_max_kb: int = param(2048, "a larger clip is not published (it stays on the device)", 1, 262144)


@dataclass(frozen=True)
class JsonlConfig:
    enabled: bool = param(False, "also write every event as one JSON line (the MQTT payload) to a file")
    path: str = param("", "regular file to append to (empty: standard output; not a FIFO, pipe standard output)")


@dataclass(frozen=True)
class MetricsConfig:
    interval_seconds: float = param(30.0, "how often metrics are published and logged", 1.0, 86400)


@dataclass(frozen=True)
class Config:
    path: str
    device: DeviceConfig
    audio: AudioConfig
    model: ModelConfig
    detector: DetectorParams  # the detector's own parameter class is the [detector] section
    mqtt: MqttConfig
    jsonl: JsonlConfig
    metrics: MetricsConfig
    calibration: CalibrationConfig = CalibrationConfig()
    clips: ClipParams = ClipParams()
    sources: tuple = ()  # SourceConfig, one per stream ([[sources]], else [audio] alone as one with id '')

    @property
    def device_id(self) -> str:
        return self.device.id or socket.gethostname().split(".")[0]

    @property
    def source_id(self) -> str:
        """The one source's id in a view of one source (with_source), or a config of [audio] alone ('')."""
        return self.sources[0].id if len(self.sources) == 1 else ""

    @property
    def where(self) -> str:
        """How a message names this view's source: 'sources.<id>: ' ('' for a config of [audio] alone)."""
        return f"sources.{self.source_id}: " if self.source_id else ""

    def views(self) -> list["Config"]:
        """This config as each source sees it (edge.sourceconfig.with_source), in the order of [[sources]]."""
        return [with_source(self, s) for s in self.sources]


SECTIONS = {"device": DeviceConfig, "audio": AudioConfig, "model": ModelConfig, "detector": DetectorParams,
            "mqtt": MqttConfig, "jsonl": JsonlConfig, "metrics": MetricsConfig, "calibration": CalibrationConfig,
            "clips": ClipParams}


MOVED_KEYS = {"mqtt.outbox_file": "mqtt.outbox_file was replaced by mqtt.spool_file (a crash-safe spool, on by "
                                   "default): remove the line, or set spool_file to the path you want"}


def read_toml(text: str, path: str) -> dict:
    return _read_toml(text, path, MAX_TOML_DEPTH)


def parse_config(text: str, path: str = "<config>") -> Config:
    data = read_toml(text, path)
    for key in data:
        if key not in SECTIONS and key != "sources":
            raise ConfigError(f"{path}: unknown section '{key}' (known: {', '.join(SECTIONS)}, sources)")
    sections = {name: section(cls, data.get(name, {}), name, path, MOVED_KEYS) for name, cls in SECTIONS.items()}
    sources = parse_sources(data, path, sections["audio"], sections["detector"], sections["calibration"])
    cfg = Config(path=path, sources=sources, **sections)
    _cross_checks(cfg)
    return cfg


def _cross_checks(cfg: Config) -> None:
    for source in cfg.sources:
        where = f"sources.{source.id}.detector" if source.id else "detector"
        _check_detector(cfg.path, source.detector, where)
    _check_name(cfg.path, "device.id", cfg.device.id, topic_problem(cfg.device.id, MAX_ID_CHARS, level=True))
    _check_name(cfg.path, "device.board", cfg.device.board, text_problem(cfg.device.board, MAX_ID_CHARS))
    if cfg.mqtt.enabled:
        _check_mqtt(cfg.path, cfg.mqtt)
    for label in cfg.clips.labels:
        why = "is not a label name" if not isinstance(label, str) else text_problem(label, MAX_LABEL_CHARS)
        if why:
            raise ConfigError(f"{cfg.path}: clips.labels: {shown(str(label))} {why}")


def _check_detector(path: str, d: DetectorParams, where: str) -> None:
    for name, value in d.thresholds.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{path}: {where}.thresholds.{name!r} must be a number between 0 and 1")
    for key in ("allow", "deny"):
        if not all(isinstance(v, str) for v in getattr(d, key)):
            raise ConfigError(f"{path}: {where}.{key} must be a list of label names")
    for key, labels in (("allow", d.allow), ("deny", d.deny), ("thresholds", d.thresholds)):
        for label in labels:
            why = text_problem(label, MAX_LABEL_CHARS)
            if why:
                raise ConfigError(f"{path}: {where}.{key}: the label {shown(label)} {why}")


TLS_PORT, PLAIN_PORT = 8883, 1883


def _check_name(path: str, key: str, value: str, why: str) -> None:
    if why:
        raise ConfigError(f"{path}: {key} {shown(value)} {why}")


def _check_mqtt(path: str, m: "MqttConfig") -> None:
    """Settings that cannot work stop the daemon here (exit 78), not in a retry loop later: a host no lookup can
    find, names that make no valid MQTT topic or string, TLS files that are not there."""
    why = host_problem(m.host)
    if why:
        raise ConfigError(f"{path}: mqtt.host {shown(m.host)} is not a host name or an IP address: it {why}")
    for key in ("prefix", "discovery_prefix"):
        value = getattr(m, key)
        if not value:
            raise ConfigError(f"{path}: mqtt.{key} must not be empty")
        _check_name(path, f"mqtt.{key}", value, topic_problem(value, MAX_PREFIX_CHARS, first=True))
    _check_name(path, "mqtt.client_id", m.client_id, text_problem(m.client_id, MAX_ID_CHARS))
    _check_name(path, "mqtt.username", m.username, text_problem(m.username, MAX_USERNAME_CHARS))
    if bool(m.cert_file) != bool(m.key_file):
        raise ConfigError(f"{path}: mqtt.cert_file and mqtt.key_file go together")
    if not m.tls:
        if m.port == TLS_PORT:
            raise ConfigError(f"{path}: mqtt.port {TLS_PORT} is MQTT over TLS: set mqtt.tls = true "
                              f"(or use port {PLAIN_PORT})")
        for key in ("ca_file", "cert_file", "key_file"):
            if getattr(m, key):
                raise ConfigError(f"{path}: mqtt.{key} is set but mqtt.tls = false: set mqtt.tls = true")
        return
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(m, key)
        if value and not os.access(value, os.R_OK):
            why = "not found" if not os.path.exists(value) else "not readable"
            raise ConfigError(f"{path}: mqtt.{key} {value}: {why}")
        kind = file_kind(os.stat(value).st_mode) if value else ""
        if kind in ("a directory", "a named pipe (FIFO)", "a socket"):  # a FIFO would hold the TLS library for ever
            raise ConfigError(f"{path}: mqtt.{key} {value}: is {kind}, not a file")


CALIBRATION_FILE = "calibration.toml"
CALIBRATION_INFO = {"target_false_starts_per_day": (int, float), "background_minutes": (int, float),
                    "written": str, "model": str, "method": str, "model_sha256": str, "labels": list,
                    "source": str}


@dataclass(frozen=True)
class Calibration:
    """A site calibration file: per-label start thresholds and what they were measured on."""

    path: str
    thresholds: dict
    info: dict


def clips_folder(cfg: ClipParams, state: Path | None = None) -> Path:
    """Where clips go: clips.folder, else clips/ in the state directory (`state`, by default this machine's)."""
    return Path(cfg.folder) if cfg.folder.strip() else (state or state_directory()) / "clips"


def calibration_name(source: str = "") -> str:
    """The calibration file's name in the state directory: CALIBRATION_FILE, or calibration-<id>.toml for a
    named source (each source is calibrated where it listens)."""
    return f"calibration-{source}.toml" if source else CALIBRATION_FILE


def calibration_target(cfg: CalibrationConfig, state: Path | None = None, source: str = "") -> Path | None:
    """Where this config's calibration file is, or goes: calibration.file, else calibration_name(source) in the
    state directory (`state`, by default this machine's); None when calibration.file is 'none'."""
    setting = cfg.file.strip()
    if setting.lower() == "none":
        return None
    return Path(setting) if setting else (state or state_directory()) / calibration_name(source)


def calibration_path(cfg: CalibrationConfig, source: str = "") -> Path | None:
    """The calibration file to load: the configured one, or the state directory's if it exists, or None."""
    target = calibration_target(cfg, source=source)
    return target if target is not None and (cfg.file.strip() or target.is_file()) else None


MAX_TARGET_PER_DAY = 100_000.0
MAX_LISTEN_MINUTES = 7 * 24 * 60.0


def target_per_day(value: float) -> float:
    """A calibration's false starts per day, checked (InputError)."""
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"--false-starts-per-day {value:g}: must be greater than 0 (no threshold below 1 promises "
                         "none at all; 0.1 is one every ten days)")
    if value > MAX_TARGET_PER_DAY:
        raise InputError(f"--false-starts-per-day {value:g}: must be at most {MAX_TARGET_PER_DAY:g}")
    return value


def listen_minutes(value: float, flag: str = "--minutes") -> float:
    """How long a calibration listens, checked (InputError)."""
    if not (math.isfinite(value) and 0 < value <= MAX_LISTEN_MINUTES):
        raise InputError(f"{flag} {value:g}: must be more than 0 and at most a week")
    return value


def parse_calibration(text: str, path: str) -> Calibration:
    """A calibration file's [detector.thresholds] (numbers between 0 and 1) and its [calibration] figures.
    ConfigError naming the file for anything else."""
    data = read_toml(text, path)
    extra = sorted(set(data) - {"detector", "calibration"})
    detector = data.get("detector", {})
    if extra or not isinstance(detector, dict) or set(detector) - {"thresholds"}:
        what = extra[0] if extra else "detector." + next(iter(set(detector) - {"thresholds"}), "")
        raise ConfigError(f"{path}: a calibration file holds [detector.thresholds] and [calibration] only "
                          f"(found '{what}')")
    thresholds = detector.get("thresholds", {})
    for name, value in thresholds.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{path}: detector.thresholds.{name!r} must be a number between 0 and 1")
    info = data.get("calibration", {})
    for key, value in info.items():
        if key not in CALIBRATION_INFO or not isinstance(value, CALIBRATION_INFO[key]):
            raise ConfigError(f"{path}: calibration.{key} is not one of {', '.join(CALIBRATION_INFO)} "
                              "with a value of its kind")
    return Calibration(path, {k: float(v) for k, v in thresholds.items()}, dict(info))


def load_calibration(cfg: CalibrationConfig, config_path: str = "", source: str = "") -> Calibration | None:
    """The site calibration the [calibration] section points at (for `source`: its own); None when there is none
    to load (also a named file that is not there yet: a device runs on its other thresholds until it has been
    calibrated)."""
    path = calibration_path(cfg, source)
    if path is None:
        return None
    text = read_text(path, "calibration file", lambda why: ConfigError(f"{config_path}: calibration.file {why}"),
                     missing_ok=True)
    return None if text is None else parse_calibration(text, str(path))


def load_config(path: str | Path) -> Config:
    """The config file (a regular file of at most 1 MiB: edge.core.files) read and checked; ConfigError else."""
    path = Path(path)
    return parse_config(read_text(path, "config file", ConfigError), str(path))


def mqtt_password(cfg: MqttConfig, config_path: str = "") -> str | None:
    """The MQTT password from the password file, the systemd credential or the environment (in that order)."""
    if cfg.password_file:
        return read_text(cfg.password_file, "password file",
                         lambda why: ConfigError(f"{config_path}: mqtt.password_file {why}")).strip()
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / "mqtt_password").is_file():
        return read_text(Path(creds) / "mqtt_password", "password file",
                         lambda why: ConfigError(f"systemd credential mqtt_password: {why}")).strip()
    return os.environ.get("EDGE_AUDIO_MQTT_PASSWORD") or None


def describe() -> str:
    """Every key with its default and description, as TOML a user can paste into a config (--show-keys)."""
    lines = []
    for name, cls in SECTIONS.items():
        lines.append(f"[{name}]")
        for f in fields(cls):
            lines.append(f"{f.name + ' = ' + toml_value(default_of(f)):<36} # {f.metadata['doc']}")
        lines.append("")
    lines += ["# several streams in one daemon: [[sources]] tables, each an id and any [audio] key over [audio],",
              "# with its own [sources.detector] and [sources.calibration] keys over [detector] and [calibration]",
              "# [[sources]]",
              '# id = "kitchen"                      # a topic level: <prefix>/<device id>/kitchen/...; unique',
              "# source = \"url\"",
              "# url = \"rtsp://user:password@camera.lan/stream1\"",
              "# [sources.detector]",
              "# allow = [\"Dog\", \"Doorbell\"]"]
    return "\n".join(lines).rstrip("\n")
