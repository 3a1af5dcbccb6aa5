"""Where a daemon's audio comes from: one [audio] section (one source, as always), or a list of [[sources]].

    [audio]                        # defaults every source starts from (and, alone, the one source)
    rate_hz = 16000
    [[sources]]
    id = "kitchen"                 # a topic level: <prefix>/<device>/kitchen/...
    device = "plughw:CARD=Mic1"
    [[sources]]
    id = "porch"
    source = "url"
    url = "rtsp://user:pass@camera.lan/stream1"   # credentials are never logged, published or shown
    [sources.detector]             # this source's own detector keys, over [detector]
    allow = ["Dog", "Doorbell"]
    [sources.calibration]          # its own site calibration (default: calibration-<id>.toml in the state folder)
    file = "/var/lib/edge-audio/porch.toml"

Errors name the source and the key ("config.toml: sources.porch.url ..."), exit 78.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .core.detector import DetectorParams
from .core.errors import ConfigError
from .core.names import MAX_ID_CHARS, redacted, shown, topic_problem, url_problem
from .core.params import param
from .core.resample import MAX_RATE_HZ, MIN_RATE_HZ
from .settings import section
from .core.stream import CHUNK_FRAMES, MAX_CHUNK_FRAMES

MAX_SOURCES = 256
# topic levels the device already uses: a source id among them would share topics with the device's own
RESERVED_IDS = ("status", "events", "state", "top", "scores", "metrics", "clips", "sources")
SOURCE_KINDS = ("alsa", "wav", "stdin", "url")


@dataclass(frozen=True)
class AudioConfig:
    source: str = param("alsa", "where audio comes from: an ALSA device, a WAV replay, raw PCM on stdin, or a "
                                "network stream (url) decoded by ffmpeg", choices=SOURCE_KINDS)
    device: str = param("default", "ALSA capture PCM name (by name, not card index: it survives re-plugging)")
    rate_hz: int = param(16000, "capture rate asked for; anything else is resampled to 16 kHz", MIN_RATE_HZ,
                         MAX_RATE_HZ)
    channels: int = param(1, "capture channels (downmixed to mono)", 1, 8)
    format: str = param("S16_LE", "ALSA sample format", choices=("S16_LE", "S32_LE"))
    period_frames: int = param(CHUNK_FRAMES, "frames per ALSA period (one read)", 64, MAX_CHUNK_FRAMES)
    file: str = param("", "WAV file for source = 'wav'")
    realtime: bool = param(True, "pace a WAV replay at real time")
    loop: bool = param(False, "replay the WAV file forever")
    url: str = param("", "stream for source = 'url': rtsp://, http://, ... (a camera's audio; anything ffmpeg "
                         "reads); user:password in it is never logged, published or shown")
    ffmpeg: str = param("ffmpeg", "the ffmpeg program that decodes a url source (Debian: apt install ffmpeg)")
    stall_seconds: float = param(5.0, "no audio for this long counts as a stalled device: reopen it", 0.5, 600)
    reopen_min_seconds: float = param(1.0, "first delay before reopening a lost device", 0.05, 600)
    reopen_max_seconds: float = param(30.0, "longest delay between reopen attempts (a camera that refuses the login "
                                            "or does not answer is retried at this pace)", 0.05, 3600)

    @property
    def live(self) -> bool:
        """Audio that goes on whether it is read or not (a microphone, a camera, a WAV replayed at real time):
        when the classifier falls behind, its oldest windows are dropped and counted, the capture never waits.
        A file read as fast as it can be, or a pipe, waits for the classifier instead."""
        return self.source in ("alsa", "url") or (self.source == "wav" and self.realtime)

    def describe(self) -> str:
        """What this source is, as logs and selftest say it (a URL without its credentials)."""
        return {"alsa": f"ALSA {self.device!r}", "wav": f"WAV {self.file}", "stdin": "stdin",
                "url": f"stream {redacted(self.url)}"}[self.source]


@dataclass(frozen=True)
class CalibrationConfig:
    file: str = param("", "site calibration written by 'edge-audio calibrate' ([detector.thresholds]); empty: "
                          "calibration.toml in the state directory if it is there (for a named source: "
                          "calibration-<id>.toml); 'none': do not load one")


@dataclass(frozen=True)
class SourceConfig:
    """One stream the daemon listens to: its id ('' for a config with [audio] alone: its topics have no source
    level, as before sources existed), its audio, and the detector and calibration it runs with."""

    id: str
    audio: AudioConfig
    detector: DetectorParams
    calibration: CalibrationConfig

    @property
    def name(self) -> str:
        return self.id or "audio"


SOURCE_TABLES = {"detector": DetectorParams, "calibration": CalibrationConfig}


def _id_key(source_id: str) -> str:
    """Ids that would share a topic id in Home Assistant (case, punctuation) compare equal here."""
    return re.sub(r"[\W_]+", "_", source_id.casefold()).strip("_")


def check_audio(a: AudioConfig, where: str) -> None:
    """Cross-key checks of one source; `where` is 'path: audio' or 'path: sources.<id>'."""
    if a.source == "wav" and not a.file:
        raise ConfigError(f"{where}.file is required when {where.split(': ')[-1]}.source = 'wav'")
    if a.source == "url":
        why = url_problem(a.url)
        if why:
            raise ConfigError(f"{where}.url {shown(redacted(a.url))} {why}")
    if a.reopen_min_seconds > a.reopen_max_seconds:
        raise ConfigError(f"{where}.reopen_min_seconds is larger than reopen_max_seconds")


def parse_sources(data: dict, path: str, audio: AudioConfig, detector: DetectorParams,
                  calibration: CalibrationConfig) -> tuple[SourceConfig, ...]:
    """The sources of a config: [[sources]] (each over [audio], [detector] and [calibration]), else [audio] as
    the one source."""
    tables = data.get("sources")
    if tables is None:
        check_audio(audio, f"{path}: audio")
        return (SourceConfig("", audio, detector, calibration),)
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: sources must be a list of tables ([[sources]] with an id each)")
    if len(tables) > MAX_SOURCES:
        raise ConfigError(f"{path}: {len(tables)} sources (at most {MAX_SOURCES})")
    out, seen = [], {}
    base_audio, base_det = data.get("audio", {}), data.get("detector", {})
    for i, table in enumerate(tables):
        sid = _source_id(table, i, path)
        other = seen.get(_id_key(sid))
        if other is not None:
            raise ConfigError(f"{path}: sources.{sid}: the id is used twice" + (f" ({other!r} and {sid!r} share one "
                              "topic id)" if other != sid else ""))
        seen[_id_key(sid)] = sid
        where = f"sources.{sid}"
        for key, value in table.items():
            if key in SOURCE_TABLES and not isinstance(value, dict):
                raise ConfigError(f"{path}: {where}.{key} must be a table ([{'sources.' + key}])")
        own = {k: v for k, v in table.items() if k != "id" and k not in SOURCE_TABLES}
        a = section(AudioConfig, {**base_audio, **own}, where, path)
        own_det = table.get("detector", {})
        merged = {**base_det, **own_det}
        if "thresholds" in own_det and isinstance(base_det.get("thresholds"), dict) and \
                isinstance(own_det["thresholds"], dict):
            merged["thresholds"] = {**base_det["thresholds"], **own_det["thresholds"]}
        d = section(DetectorParams, merged, f"{where}.detector", path)
        c = section(CalibrationConfig, table["calibration"], f"{where}.calibration", path) \
            if "calibration" in table else calibration
        check_audio(a, f"{path}: {where}")
        out.append(SourceConfig(sid, a, d, c))
    stdin = [s.id for s in out if s.audio.source == "stdin"]
    if len(stdin) > 1:
        raise ConfigError(f"{path}: sources.{stdin[1]}.source = 'stdin': only one source can read standard input "
                          f"(sources.{stdin[0]} does)")
    return tuple(out)


def _source_id(table: dict, index: int, path: str) -> str:
    sid = table.get("id")
    if not isinstance(sid, str) or not sid:
        raise ConfigError(f"{path}: sources[{index + 1}] has no id (id = \"kitchen\": a topic level, unique)")
    why = topic_problem(sid, MAX_ID_CHARS, level=True)
    if why:
        raise ConfigError(f"{path}: sources[{index + 1}].id {shown(sid)} {why}")
    if sid.startswith("$") or _id_key(sid) in RESERVED_IDS:
        raise ConfigError(f"{path}: sources[{index + 1}].id {shown(sid)} is a name the device's own topics use "
                          f"({', '.join(RESERVED_IDS)}) or starts with '$'")
    return sid


def with_source(cfg, source: SourceConfig):
    """`cfg` (a Config) as one source sees it: its audio, detector and calibration in the sections' places, and
    `sources` holding it alone. Everything that works per stream (thresholds, calibration, show-config) takes
    this view."""
    return replace(cfg, audio=source.audio, detector=source.detector, calibration=source.calibration,
                   sources=(source,))
