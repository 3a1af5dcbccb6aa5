"""Where each label's start threshold comes from: the layers, in the order that decides.

    user override   [detector] thresholds in the config file       (the user said so)
    calibration     [detector.thresholds] of the site's calibration file (measured here by `edge-audio calibrate`)
    bundle          the model bundle's own per-label thresholds   (chosen for that model by whoever built it)
    profile default [detector] threshold                           (one value for every label)

Pure: the layers come in as plain mappings {label: threshold}.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .detector import DetectorParams, resolve_labels

USER, CALIBRATION, BUNDLE, DEFAULT = "user override", "calibration", "bundle", "profile default"


def canonical(layer: dict, labels: list[str], key: str) -> dict:
    """A layer with its label names spelled as the model spells them (names match case-insensitively);
    LabelError (naming `key`) for a label the model does not have."""
    return {labels[resolve_labels([name], labels, key)[0]]: value for name, value in layer.items()}


@dataclass(frozen=True)
class ThresholdLayers:
    user: dict  # label -> threshold, from the config file
    calibration: dict
    bundle: dict
    default: float
    calibration_file: str = ""  # where the calibration came from (shown by --show-config)

    @classmethod
    def of(cls, params: DetectorParams, calibration: dict | None = None, bundle: dict | None = None,
           calibration_file: str = "") -> "ThresholdLayers":
        return cls(dict(params.thresholds), dict(calibration or {}), dict(bundle or {}), params.threshold,
                   calibration_file)

    def merged(self) -> dict:
        """Every per-label threshold that applies, the higher layers winning."""
        return {**self.bundle, **self.calibration, **self.user}

    def source(self, label: str) -> tuple[float, str]:
        """(threshold, the layer it comes from) for one label."""
        for name, layer in ((USER, self.user), (CALIBRATION, self.calibration), (BUNDLE, self.bundle)):
            if label in layer:
                return float(layer[label]), name
        return float(self.default), DEFAULT

    def apply(self, params: DetectorParams) -> DetectorParams:
        """The detector's parameters with the merged per-label thresholds. With no `allow` list, a bundle's
        labels are the ones watched (a bundle trained for its own sounds names them; its "background" has no
        threshold)."""
        return replace(params, thresholds=self.merged(), allow=params.allow or list(self.bundle))
