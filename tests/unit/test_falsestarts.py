"""The calibration statistics on synthetic scores whose tail is known, and the threshold layers' precedence."""

import math

import numpy as np
import pytest

from edge.config import parse_calibration
from edge.core.detector import DetectorParams
from edge.core.errors import ConfigError
from edge.core.falsestarts import (above, bursts, fit_tail, logit, start_statistic, windows_to_start)
from edge.core.thresholds import BUNDLE, CALIBRATION, DEFAULT, USER, ThresholdLayers

HOP = 0.48


def exponential_logits(n, sigma=0.8, seed=1):
    z = -8.0 + np.random.default_rng(seed).exponential(sigma, n)
    return 1.0 / (1.0 + np.exp(-z))


def test_the_fit_recovers_a_known_tail_and_meets_the_target_on_fresh_audio():
    fit = fit_tail([exponential_logits(15000)], HOP, gap_windows=3)  # two hours
    assert not fit.problem and not fit.contaminated
    assert 0.6 < fit.sigma < 1.0  # the true scale is 0.8
    threshold = fit.threshold_for(240.0)  # ten an hour
    fresh = exponential_logits(15000 * 25, seed=2)  # fifty hours never seen by the fit
    per_hour = len(bursts([fresh], threshold - 1e-12, 3)) / 50
    print(f"threshold {threshold}: {per_hour:.2f} false starts per hour on fresh audio (target 10)")
    assert 5 <= per_hour <= 12


def test_never_below_the_highest_background_score_when_the_target_allows_none_in_it():
    scores = exponential_logits(3000)
    fit = fit_tail([scores], HOP, 3)
    assert fit.threshold_for(1.0) >= above(scores.max()) > scores.max()


def test_a_burst_far_above_the_tail_is_called_contamination_and_left_out():
    scores = exponential_logits(15000)
    clean_max = scores.max()
    scores[5000:5006] = 0.995
    scores[9000:9003] = 0.99
    fit = fit_tail([scores], HOP, 3)
    assert sorted((b.first, b.windows) for b in fit.contaminated) == [(5000, 6), (9000, 3)]
    assert fit.max_score == pytest.approx(clean_max)
    assert fit.threshold_for(1.0) < 0.99
    assert fit.burst_rarity(0.995) < 0.01


def test_too_little_tail_is_said_not_guessed():
    fit = fit_tail([np.zeros(500), np.full(3, 0.2)], HOP, 3)
    assert "too little of the tail" in fit.problem and math.isnan(fit.rate_per_day(0.5))


def test_the_start_statistic_follows_min_duration_and_hysteresis():
    assert windows_to_start(0.0, 0.975, HOP) == 0 and windows_to_start(1.5, 0.975, HOP) == 2
    s = np.array([0.1, 0.6, 0.5, 0.2])
    assert np.allclose(start_statistic(s, 0.7, 0), s)
    # a start at window i needs the next window at or above off = 0.7 x on: on <= next / 0.7 as well
    assert np.allclose(start_statistic(s, 0.7, 1), [0.1, 0.6, 0.2 / 0.7, 0.0])


def test_logit_is_finite_at_the_ends():
    assert np.all(np.isfinite(logit([0.0, 1.0])))


def test_layers_user_beats_calibration_beats_bundle_beats_default():
    params = DetectorParams(threshold=0.5, thresholds={"Dog": 0.9})
    layers = ThresholdLayers.of(params, calibration={"Dog": 0.3, "Cat": 0.4}, bundle={"Cat": 0.2, "Cow": 0.6})
    assert layers.source("Dog") == (0.9, USER)
    assert layers.source("Cat") == (0.4, CALIBRATION)
    assert layers.source("Cow") == (0.6, BUNDLE)
    assert layers.source("Pig") == (0.5, DEFAULT)
    assert layers.apply(params).thresholds == {"Dog": 0.9, "Cat": 0.4, "Cow": 0.6}


@pytest.mark.parametrize("text,needle", [
    ("[detector.thresholds]\nDog = 1.5\n", "between 0 and 1"),
    ("[detector]\nthreshold = 0.2\n", "[detector.thresholds] and [calibration] only"),
    ("[mqtt]\nhost = 'x'\n", "found 'mqtt'"),
    ("[calibration]\nwhen = 3\n", "calibration.when"),
    ("[detector.thresholds\n", "not valid TOML"),
])
def test_a_calibration_file_is_read_strictly(text, needle):
    with pytest.raises(ConfigError, match=r"^cal\.toml: ") as info:
        parse_calibration(text, "cal.toml")
    assert needle in str(info.value)
