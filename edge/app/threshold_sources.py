"""The start threshold of every watched label, and where it came from: user override > site calibration > model
bundle > profile default (the layers are edge/core/thresholds.py; this file finds them for a config)."""

from __future__ import annotations

import logging

from ..config import Calibration, Config, calibration_name, calibration_path, load_calibration, state_directory
from ..core.detector import resolve_labels
from ..core.errors import ConfigError, InputError
from ..core.thresholds import ThresholdLayers, canonical

log = logging.getLogger("edge.thresholds")


def bundle_thresholds(classifier) -> dict:
    """The model bundle's own per-label thresholds (manifest key "thresholds", set by `tools train-head` from its
    validation split), beneath the site calibration."""
    return dict(getattr(classifier, "thresholds", None) or {})


def threshold_layers(cfg: Config, labels: list[str], bundle: dict,
                     calibration: Calibration | None = None) -> ThresholdLayers:
    """Every layer, label names spelled as the model spells them. An unknown label is a ConfigError naming the
    file it is in (the config or the calibration file)."""
    def spelled(layer: dict, where: str, key: str) -> dict:
        try:
            return canonical(layer, labels, key)
        except InputError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    user = spelled(cfg.detector.thresholds, cfg.path, "detector.thresholds")
    cal = spelled(calibration.thresholds, calibration.path, "detector.thresholds") if calibration else {}
    return ThresholdLayers(user, cal, spelled(bundle, "model bundle", "thresholds"), cfg.detector.threshold,
                           calibration.path if calibration else "")


def layers_for(cfg: Config, classifier, warn=log.warning) -> ThresholdLayers:
    """The layers the daemon runs with: the calibration file the config points at is read here, and used only
    when it was made for this model and its labels (else `warn` says why it is ignored and how to renew it)."""
    calibration = load_calibration(cfg.calibration, cfg.path, cfg.source_id)
    if calibration is not None:
        why = calibration_mismatch(calibration, classifier)
        if why:
            warn(f"{calibration.path} ignored: {why}; renew it for this model: edge-audio calibrate --config "
                 f"{cfg.path}{' --source ' + cfg.source_id if cfg.source_id else ''} --minutes 60 (or deploy "
                 "--calibrate 60)")
            calibration = None
    return threshold_layers(cfg, classifier.labels, bundle_thresholds(classifier), calibration)


def calibration_mismatch(calibration: Calibration, classifier) -> str:
    """Why a site calibration does not fit this model ("" when it does): another model (its sha256, else its
    name when the file predates the hash), or labels this model does not have."""
    info = calibration.info
    made_for = info.get("model", "another model")
    digest = getattr(classifier, "model_digest", "")
    if info.get("model_sha256") and digest and info["model_sha256"] != digest:
        return (f"it was made for model {made_for} (sha256 {info['model_sha256'][:12]}), this daemon runs "
                f"{classifier.model_name} (sha256 {digest[:12]})")
    if not info.get("model_sha256") and info.get("model") and info["model"] != classifier.model_name:
        return f"it was made for model {made_for}, this daemon runs {classifier.model_name}"
    missing = [name for name in [*calibration.thresholds, *info.get("labels", [])] if not _has(classifier, name)]
    if missing:
        return (f"it sets thresholds for label(s) {classifier.model_name} does not have "
                f"({', '.join(map(repr, sorted(set(missing))[:3]))})")
    return ""


def _has(classifier, name) -> bool:
    try:
        resolve_labels([str(name)], classifier.labels, "calibration")
    except InputError:
        return False
    return True


def watched_labels(cfg: Config, labels: list[str], bundle: dict | None = None) -> list[str]:
    """The labels the detector watches, as the model spells them (with no `allow` list: a trained bundle's own
    labels, else every label)."""
    d = ThresholdLayers.of(cfg.detector, bundle=bundle).apply(cfg.detector)
    try:
        deny = set(resolve_labels(d.deny, labels, "detector.deny"))
        allow = resolve_labels(d.allow, labels, "detector.allow") if d.allow else range(len(labels))
    except InputError as exc:
        raise ConfigError(f"{cfg.path}: {exc}") from None
    return [labels[i] for i in allow if i not in deny]


def state_labels_for(cfg: Config, labels: list[str], layers: ThresholdLayers) -> list[str]:
    """The watched labels that get an ON/OFF state (Home Assistant's binary sensors), sorted: with an allow list
    (the config's, else a trained bundle's own labels) the ones watched; with none (every label watched) none."""
    if not layers.apply(cfg.detector).allow:
        return []
    return sorted(set(watched_labels(cfg, labels, layers.bundle)))


def show_config(cfg: Config, classifier) -> str:
    """What `edge-audio run --show-config` prints: each watched label's start and end threshold and its source."""
    ignored: list[str] = []
    layers = layers_for(cfg, classifier, ignored.append)
    watched = watched_labels(cfg, classifier.labels, bundle_thresholds(classifier))
    where = calibration_path(cfg.calibration, cfg.source_id)
    if ignored:
        cal = f"calibration: none ({ignored[0]})"
    elif layers.calibration_file:
        cal = f"calibration: {layers.calibration_file}"
    elif cfg.calibration.file.strip().lower() == "none":
        cal = "calibration: none (calibration.file = 'none')"
    else:
        cal = f"calibration: none ({where or state_directory() / calibration_name(cfg.source_id)} is not there)"
    lines = [f"config: {cfg.path}" + (f" (source {cfg.source_id}: {cfg.audio.describe()})" if cfg.source_id else ""),
             f"model: {classifier.model_name} ({classifier.decision.delegate})", cal,
             f"precedence: user override > calibration > bundle > profile default ({cfg.detector.threshold})",
             f"{'label':<40} {'on':>6} {'off':>6}  from"]
    shown = watched if cfg.detector.allow else [l for l in classifier.labels if l in layers.merged()]
    for label in shown:
        value, source = layers.source(label)
        lines.append(f"{label:<40} {value:>6.3f} {value * cfg.detector.off_ratio:>6.3f}  {source}")
    if not cfg.detector.allow:
        lines.append(f"{'every other label (' + str(len(watched) - len(shown)) + ')':<40} "
                     f"{cfg.detector.threshold:>6.3f} {cfg.detector.threshold * cfg.detector.off_ratio:>6.3f}  "
                     "profile default")
    return "\n".join(lines)
