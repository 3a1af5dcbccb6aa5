"""Clip-level accuracy of each model path on the labelled devset (160 real recordings, 20 classes).

Floors sit a little under what was measured when this test was written, so they catch a broken front end,
resampler or quantization (which cost tens of points), not noise."""

import pytest

from edge.model.classifier import Classifier
from tools.eval.accuracy import clip_scores, hit_rates, read_labels_csv

HOP = 7800 / 16000  # the devset's reference figures use a 7800-sample hop


@pytest.fixture(scope="module")
def devset(assets):
    folder = assets / "devset"
    clips = read_labels_csv(folder / "labels.csv")
    return [folder / "clips" / c.file for c in clips], clips


@pytest.mark.slow
@pytest.mark.parametrize("model,floor", [
    ("models/coral/yamnet_spectra_in.tflite", 0.72),  # Coral's int8 twin through the kit's front end
    ("models/yamnet_classification.tflite", 0.68),  # the published waveform model (reference 0.71)
])
def test_devset_clip_top5(assets, devset, model, floor):
    files, clips = devset
    classifier = Classifier.open(assets / model, assets / "models" / "yamnet_class_map.csv", "cpu")
    rates = hit_rates(clip_scores(classifier, files, HOP), clips)
    print(f"\n{model}: {rates}")
    assert rates["strict_top5"] >= floor
    assert rates["lenient_top5"] >= rates["strict_top5"]
