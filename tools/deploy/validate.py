"""The release a deploy is about to make, checked on this machine before anything is built or uploaded.

Its config.toml is composed exactly as the device will write it (edge.app.release.compose: the profile or the
--config file, the shipped bundle's path, every --set read as a TOML value) and read by the daemon's own loader;
the bundle given with --bundle has every file checked against its sha256; the label names in detector.allow, deny
and thresholds must be the model's (each [[sources]] table's own too). A bad value stops the deploy in one line, exit 2. Nothing here needs the
device's audio hardware, its broker or its files: what only the device has (the microphone, a camera and the
ffmpeg that decodes it, the broker, a TLS file named by a device path) is the device's selftest's to check.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from edge import firmware
from edge.app.release.compose import compose_config
from edge.config import Config, parse_config
from edge.core.errors import ConfigError, InputError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

# the loader checks that these files can be read: on this machine, a path on the device cannot
DEVICE_FILE = re.compile(r"mqtt\.(ca_file|cert_file|key_file) .*: not (found|readable)$")
DEVICE_FILES = (("mqtt", "ca_file"), ("mqtt", "cert_file"), ("mqtt", "key_file"))
REFUSED = "checked before upload: nothing was sent to the device"


@dataclass(frozen=True)
class Checked:
    config: Config
    default_model: bool  # the release runs the default bundle: the device's own, or one shipped by the deploy
    labels_from: str  # what the label names were checked against ("" when there was nothing to check them with)


def check_release(plan, default_labels: Callable[[], Path | None]) -> Checked:
    """The release's config and bundle, checked as the device would check them. `default_labels()` gives the
    default bundle's label file when the release runs the default bundle (None: not on this machine)."""
    cfg = release_config(plan)
    bundle = Path(plan.bundle).resolve() if plan.bundle else None
    default_model = bundle is None and not cfg.model.path
    labels, thresholds, source = None, {}, ""
    if bundle is not None:
        from edge.model.bundle import load_bundle
        shipped = _refused(load_bundle, bundle)  # every file against its sha256
        if cfg.model.path == str(bundle):  # (not when a --set model.path names another model)
            labels, thresholds, source = shipped.labels, shipped.thresholds, f"the bundle {plan.bundle}"
    elif default_model:
        labels = default_labels()
        source = "the default bundle's labels" if labels else ""
    if labels is not None:
        check_labels(cfg, labels, thresholds)
    return Checked(cfg, default_model, source)


def release_config(plan) -> Config:
    """The release's config.toml as the device will write it, read by the daemon's loader."""
    try:
        text = Path(plan.config).read_text() if plan.config else firmware.profile_text(plan.profile)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--config {plan.config}: cannot read it ({exc})") from None
    bundle = str(Path(plan.bundle).resolve()) if plan.bundle else None
    where = f"the release's config ({plan.config or 'profile ' + plan.profile}{' + --set' if plan.settings else ''})"
    composed = _refused(compose_config, text, bundle, plan.settings)
    try:
        return parse_config(composed, where)
    except ConfigError as exc:
        if not DEVICE_FILE.search(str(exc)):
            raise InputError(f"{exc} ({REFUSED})") from None
    # that check comes last: everything else passed. Once more, with a file this machine can read in their place
    stand_ins = [f"{key}.{name}={json.dumps(os.devnull)}" for key, name in DEVICE_FILES]
    cfg = _refused(parse_config, compose_config(text, bundle, [*plan.settings, *stand_ins]), where)
    named = tomllib.loads(composed).get("mqtt", {})
    return replace(cfg, mqtt=replace(cfg.mqtt, **{name: named.get(name, "") for _, name in DEVICE_FILES}))


def check_labels(cfg: Config, labels_file: Path, bundle_thresholds: dict) -> None:
    """detector.allow, deny and thresholds name labels of the model (as the daemon checks them at start), for
    every source: a [[sources]] table's own detector keys too, its errors naming it (sources.<id>.detector...)."""
    from edge.app.threshold_sources import threshold_layers, watched_labels
    from edge.model.labels import load_labels
    labels = _refused(load_labels, labels_file)
    for view in cfg.views():
        for step in (threshold_layers, watched_labels):
            try:
                step(view, labels, bundle_thresholds)
            except (ConfigError, InputError) as exc:
                message, head = str(exc), f"{cfg.path}: "
                if view.source_id and message.startswith(head + "detector."):
                    message = f"{head}sources.{view.source_id}.{message[len(head):]}"
                raise InputError(f"{message} ({REFUSED})") from None


def _refused(step, *args):
    """step(*args), its error one line that says nothing reached the device."""
    try:
        return step(*args)
    except (ConfigError, InputError) as exc:
        raise InputError(f"{exc} ({REFUSED})") from None
