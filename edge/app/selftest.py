"""`edge-audio selftest`: the on-device check a release must pass before it becomes current.

In order: the config is valid (else exit 78), every bundle file matches its sha256, the model loads through the
delegate policy (which one and why), the bundle's known clip classifies to its expected class, the ALSA device
opens (a named warning when the source is not ALSA, or when the running service holds the device), the broker
answers (a warning: the outbox exists for outages; a failure with --require-broker). Exit 0 / 2 / 78.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config, load_config, mqtt_password
from ..core.clip import DEFAULT_POOL, pool_scores
from ..core.errors import EXIT_BAD_INPUT, EXIT_CONFIG, EXIT_OK, ConfigError, EdgeAudioError, InputError
from ..model.bundle import default_bundle_path, is_bundle, load_bundle
from ..model.classifier import Classifier
from ..model.recordings import classify_file
from .command import add_command

OK, WARN, FAIL = "ok", "warning", "failed"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    seconds: float = 0.0


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    exit_status: int = EXIT_OK
    values: dict = field(default_factory=dict)  # the effective settings a release step compares with its own

    def add(self, name: str, status: str, detail: str, t0: float) -> Check:
        check = Check(name, status, detail, round(time.monotonic() - t0, 3))
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
        report.values = _values(cfg)
        report.add("config", OK, f"{config} is valid (device id {cfg.device_id})", t0)
    else:
        report.add("config", WARN, "no --config given: defaults for the model, audio and broker checks", t0)
    say(_line(report.checks[-1]))
    for step in (_bundle_and_model, _audio, _broker):
        for check in step(report, cfg, bundle, require_broker=require_broker, wait_online_s=wait_online_s,
                          broker_timeout_s=broker_timeout_s):
            say(_line(check))
            if check.status == FAIL and step is _bundle_and_model:
                return report
    return report


def _values(cfg: Config) -> dict:
    values = {}
    for section in ("device", "audio", "model", "detector", "mqtt", "metrics"):
        for key, value in asdict(getattr(cfg, section)).items():
            values[f"{section}.{key}"] = value
    values["device.id"] = cfg.device_id
    return values


def _bundle_and_model(report: Report, cfg: Config | None, bundle: str | None, **_):
    t0 = time.monotonic()
    model = cfg.model if cfg else None
    path = Path(bundle or (model.path if model and model.path else default_bundle_path()))
    loaded = None
    if is_bundle(path):
        try:
            loaded = load_bundle(path)
        except EdgeAudioError as exc:
            yield report.add("bundle", FAIL, str(exc), t0)
            return
        yield report.add("bundle", OK, f"{path}: {len(loaded.manifest.get('files', {}))} files match their sha256",
                         t0)
    else:
        yield report.add("bundle", WARN, f"{path}: not a bundle (no manifest.json): no hashes to verify", t0)
    t0 = time.monotonic()
    try:
        classifier = Classifier.open(path, model.labels or None if model else None, model.delegate if model else "auto",
                                     model.threads if model else 1, (model.backend or None) if model else None)
    except EdgeAudioError as exc:
        yield report.add("model", FAIL, str(exc), t0)
        return
    d = classifier.decision
    yield report.add("model", OK, f"{d.model.name} on {d.delegate}: {d.reason}", t0)
    yield _clip(report, classifier, loaded)


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


def _audio(report: Report, cfg: Config | None, _bundle, **_):
    t0 = time.monotonic()
    if cfg is None:
        yield report.add("audio", WARN, "no config: capture not checked", t0)
        return
    if cfg.audio.source != "alsa":
        yield report.add("audio", WARN, f"audio.source is {cfg.audio.source!r}, not ALSA: capture not checked", t0)
        return
    from ..audio.alsa import AlsaSource
    from ..audio.capture import SourceLost
    try:
        source = AlsaSource(cfg.audio)
        source.open()
        rate = source.rate_hz
        source.close()
    except (EdgeAudioError, SourceLost) as exc:
        if "busy" in str(exc).lower():
            yield report.add("audio", WARN, f"ALSA {cfg.audio.device}: busy (the running service holds it)", t0)
        else:
            yield report.add("audio", FAIL, f"ALSA {cfg.audio.device}: {exc}", t0)
        return
    yield report.add("audio", OK, f"ALSA {cfg.audio.device} opens at {rate} Hz", t0)


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
