"""`edge-audio selftest`: the on-device check a release must pass before it becomes current.

In order: the config is valid (else exit 78), every bundle file matches its sha256, then the daemon's own start-up
(edge/app/startup.py, the steps `run` takes, through the same code): the model loads through the delegate policy
(which one and why) and the bundle's known clip classifies to its expected class; the thresholds and the site
calibration (ignored, with a warning, when it was made for another model); the audio source opens and closes (a
missing WAV file or ALSA device fails; one held by the running service is a warning); the sinks (the spool opens,
Home Assistant payloads build); the detector. Last, the broker answers (a warning: the outbox exists for outages;
a failure with --require-broker). Any error that would stop `run` fails here with the same line and exit status
(78 for the configuration, 2 otherwise).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config, load_config, mqtt_password
from ..core.clip import DEFAULT_POOL, pool_scores
from ..core.names import redacted
from ..core.errors import EXIT_BAD_INPUT, EXIT_CONFIG, EXIT_OK, ConfigError, EdgeAudioError, InputError
from ..model.bundle import default_bundle_path, is_bundle, load_bundle
from ..model.classifier import Classifier
from ..model.recordings import classify_file
from .command import add_command
from .startup import STEPS, Startup

OK, WARN, FAIL = "ok", "warning", "failed"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    seconds: float = 0.0
    source: str = ""  # the source a check of the audio step is about ('' for [audio] alone and the other steps)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    exit_status: int = EXIT_OK
    values: dict = field(default_factory=dict)  # the effective settings a release step compares with its own
    bundle: object = None  # the bundle the checks loaded (its self-test clip)

    def add(self, name: str, status: str, detail: str, t0: float, source: str = "") -> Check:
        check = Check(name, status, detail, round(time.monotonic() - t0, 3), source)
        self.checks.append(check)
        if status == FAIL and self.exit_status == EXIT_OK:
            self.exit_status = EXIT_BAD_INPUT
        return check

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if c.status == FAIL), None)

    def to_dict(self) -> dict:
        return {"status": "passed" if self.exit_status == EXIT_OK else "failed", "exit_status": self.exit_status,
                "checks": [asdict(c) for c in self.checks], "values": self.values}


def run_selftest(config: str | None, bundle: str | None, require_broker: bool = False, wait_online_s: float = 0.0,
                 broker_timeout_s: float = 5.0, say=lambda line: None) -> Report:
    report = Report()
    t0 = time.monotonic()
    cfg = None
    if config:
        try:
            cfg = load_config(config)
        except ConfigError as exc:
            report.add("config", FAIL, str(exc), t0)
            report.exit_status = EXIT_CONFIG
            return report
        if bundle:  # the bundle given here stands in for the config's model
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, path=str(bundle)))
        report.values = _values(cfg)
        report.add("config", OK, f"{config} is valid (device id {cfg.device_id})", t0)
    else:
        report.add("config", WARN, "no --config given: the bundle and model only (the daemon's start-up needs a "
                                   "config)", t0)
    say(_line(report.checks[-1]))
    steps = (_bundle, _startup, _broker) if cfg else (_bundle, _model_only)
    for step in steps:
        for check in step(report, cfg, bundle, require_broker=require_broker, wait_online_s=wait_online_s,
                          broker_timeout_s=broker_timeout_s):
            say(_line(check))
            if check.status == FAIL:
                if cfg is not None and check.name == "bundle":
                    report.exit_status = EXIT_CONFIG  # what `run` exits with for the same damaged file
                return report
    return report


def _bundle_path(cfg: Config | None, bundle: str | None) -> Path:
    return Path(bundle or (cfg.model.path if cfg and cfg.model.path else default_bundle_path()))


def _bundle(report: Report, cfg: Config | None, bundle: str | None, **_):
    """Every file of the bundle against its sha256 (the model step loads it; this names a damaged file)."""
    t0 = time.monotonic()
    path = _bundle_path(cfg, bundle)
    report.bundle = None
    if not is_bundle(path):
        yield report.add("bundle", WARN, f"{path}: not a bundle (no manifest.json): no hashes to verify", t0)
        return
    try:
        report.bundle = load_bundle(path)
    except EdgeAudioError as exc:
        yield report.add("bundle", FAIL, str(exc), t0)
        return
    files = len(report.bundle.manifest.get("files", {}))
    yield report.add("bundle", OK, f"{path}: {files} files match their sha256", t0)


def _startup(report: Report, cfg: Config, _bundle_arg, **_):
    """The daemon's own start-up (edge/app/startup.py), step by step, with sources opened and closed again (one
    check per source: its line, or its warnings); the bundle's clip right after the model."""
    warnings: list[str] = []
    parts = Startup(cfg, checking=True, warn=warnings.append)
    for step in STEPS:
        t0 = time.monotonic()
        try:
            detail = parts.run_step(step)
        except EdgeAudioError as exc:
            yield from _per_source(report, parts.opened, t0, done_only=True) if step == "audio" else ()
            source = parts.opened[-1][0] if step == "audio" and parts.opened else ""
            failed = report.add(step, FAIL, str(exc), t0, source)
            if isinstance(exc, ConfigError):
                report.exit_status = EXIT_CONFIG  # what `run` exits with, for the same line
            yield failed
            return
        if step == "audio":
            yield from _per_source(report, parts.opened, t0)
        else:
            for warning in warnings:
                yield report.add(step, WARN, warning, t0)
            if not warnings:
                yield report.add(step, OK, detail, t0)
        warnings.clear()
        if step == "model":
            yield _clip(report, parts.classifier, report.bundle)


def _per_source(report: Report, opened: list, t0: float, done_only: bool = False):
    """The audio step's checks: a line per source (what opened, at which rate), or that source's warnings (a
    camera not answering now, a device the service holds). `done_only`: the sources checked before one failed."""
    for source_id, line, warned in opened:
        if not line and done_only:
            continue
        for warning in warned:
            yield report.add("audio", WARN, warning, t0, source_id)
        if not warned:
            yield report.add("audio", OK, line, t0, source_id)


def _model_only(report: Report, _cfg, bundle: str | None, **_):
    t0 = time.monotonic()
    try:
        classifier = Classifier.open(_bundle_path(None, bundle))
    except EdgeAudioError as exc:
        yield report.add("model", FAIL, str(exc), t0)
        return
    d = classifier.decision
    yield report.add("model", OK, f"{d.model.name} on {d.delegate}: {d.reason}", t0)
    yield _clip(report, classifier, report.bundle)


def _values(cfg: Config) -> dict:
    """The effective settings by their dotted key (a named source's own as sources.<id>.<key>); a URL that holds
    credentials is left out (never shown)."""
    values = {}
    for section in ("device", "audio", "model", "detector", "mqtt", "metrics"):
        for key, value in asdict(getattr(cfg, section)).items():
            values[f"{section}.{key}"] = value
    values["device.id"] = cfg.device_id
    for source in cfg.sources:
        where = f"sources.{source.id}." if source.id else "audio."
        for key, value in asdict(source.audio).items():
            values[where + key] = value
        if source.id:
            for key, value in asdict(source.detector).items():
                values[f"{where}detector.{key}"] = value
    for key in [k for k in values if k.endswith(".url")]:
        if redacted(values[key]) != values[key]:
            del values[key]
    return values


def _clip(report: Report, classifier: Classifier, bundle) -> Check:
    """The bundle's own check: its clip, pooled as the bundle says (default mean), has the expected top class."""
    t0 = time.monotonic()
    spec = bundle.selftest if bundle is not None else None
    if spec is None:
        return report.add("clip", WARN, "the bundle records no self-test clip and expected class", t0)
    try:
        windows = [w.scores.copy() for w in classify_file(spec.clip, classifier)]
    except EdgeAudioError as exc:
        return report.add("clip", FAIL, f"{spec.clip.name}: {exc}", t0)
    pool = bundle.clip_pool or DEFAULT_POOL
    top = classifier.top(pool_scores(windows, pool) if windows else np.zeros_like(classifier.scores), 3)
    shown = ", ".join(f"{t['label']} {t['score']:.2f}" for t in top)
    if not top or top[0]["label"] != spec.expected:
        return report.add("clip", FAIL, f"{spec.clip.name} no longer classifies as {spec.expected} ({pool} of "
                                         f"{len(windows)} windows: {shown}); the model or front end is broken", t0)
    return report.add("clip", OK, f"{spec.clip.name}: {spec.expected} ({pool} of {len(windows)} windows: {shown})",
                      t0)


def _broker(report: Report, cfg: Config | None, _bundle, require_broker=False, wait_online_s=0.0,
            broker_timeout_s=5.0, **_):
    t0 = time.monotonic()
    if cfg is None or not cfg.mqtt.enabled:
        yield report.add("broker", OK if cfg else WARN, "MQTT is off (mqtt.enabled = false)" if cfg else
                         "no config: broker not checked", t0)
        return
    from ..sinks.broker_check import probe
    try:
        password = mqtt_password(cfg.mqtt, cfg.path)
    except ConfigError as exc:
        yield report.add("broker", FAIL, str(exc), t0)
        return
    status_topic = f"{cfg.mqtt.prefix}/{cfg.device_id}/status" if wait_online_s else None
    ok, detail = probe(cfg.mqtt, password, broker_timeout_s, status_topic, wait_online_s)
    where = f"broker {cfg.mqtt.host}:{cfg.mqtt.port}"
    if ok:
        yield report.add("broker", OK, f"{where}: {detail}", t0)
    elif require_broker:
        yield report.add("broker", FAIL, f"{where}: {detail}", t0)
    else:
        yield report.add("broker", WARN, f"{where}: {detail} (events wait in the outbox until it answers)", t0)


def _line(check: Check) -> str:
    mark = {OK: "ok  ", WARN: "warn", FAIL: "FAIL"}[check.status]
    return f"  {mark} {check.name:7s} {check.detail}"


def cmd_selftest(args) -> int:
    show = (lambda line: None) if args.json else functools.partial(print, flush=True)  # each check, on stdout
    report = run_selftest(args.config, args.bundle, args.require_broker, args.wait_online, args.broker_timeout, show)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    failed = report.first_failure
    if failed is not None:  # the one error line, with the report's exit status
        error = ConfigError if report.exit_status == EXIT_CONFIG else InputError
        raise error(f"selftest failed: {failed.name}: {failed.detail}")
    if not args.json:
        warnings = sum(c.status == WARN for c in report.checks)
        print(f"selftest passed ({warnings} warning{'s' if warnings != 1 else ''})")
    return report.exit_status


def add_parser(sub) -> None:
    p = add_command(sub, "selftest", "check this device before a release goes live: config, bundle, model, clip",
                    __doc__.split("\n\n", 1)[1],
                    ["edge-audio selftest --config /opt/edge-audio/current/config.toml",
                     "edge-audio selftest --bundle ~/.local/share/edge-audio/models/yamnet-coral --json"])
    p.add_argument("--config", metavar="FILE", help="the daemon's TOML configuration (checked first; exit 78 if bad)")
    p.add_argument("--bundle", metavar="DIR", help="model bundle (default: the config's model.path, else the "
                                                   "installed bundle)")
    p.add_argument("--json", action="store_true", help="one JSON report on stdout")
    p.add_argument("--require-broker", action="store_true",
                   help="a broker that does not answer fails the check (a release's health step uses this)")
    p.add_argument("--wait-online", type=float, default=0.0, metavar="S",
                   help="also wait up to S seconds for this device's retained status 'online' on the broker")
    p.add_argument("--broker-timeout", type=float, default=5.0, metavar="S", help="seconds to wait for the broker")
    p.set_defaults(func=cmd_selftest)
