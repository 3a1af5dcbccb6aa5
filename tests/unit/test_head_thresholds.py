"""train-head's start thresholds: target_met says whether the threshold as written reaches the target precision on
the held-out windows, and the report says so in words, on constructed scores at the boundary."""

import numpy as np

from tools.heads.report import THRESHOLD_FLOOR, choose_thresholds, shown_precision, threshold_lines

TARGET = 0.9


def _windows(cat: list[float], other: list[float]) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Two held-out files, one of each class; a window's 'cat' score is as given, its 'dog' score the rest."""
    def scores(values):
        cat_scores = np.asarray(values, np.float32)
        return np.stack([cat_scores, 1 - cat_scores], axis=1)
    return [scores(cat), scores(other)], [0, 1], ["cat", "dog"]


def _precision_at(threshold: float, cat: list[float], other: list[float]) -> float:
    s = np.asarray(cat + other, np.float32).astype(np.float64)
    positive = np.r_[np.ones(len(cat), bool), np.zeros(len(other), bool)]
    chosen = s >= threshold
    return float(positive[chosen].mean()) if chosen.any() else 0.0


# 9 of the 10 windows at or above 0.7112 are cat (precision 0.9 exactly there); rounded up to three decimals that
# threshold (0.712) loses the cat window at 0.7112 and keeps the other-class one at 0.93: 8 of 9, 0.889
CAT = [0.95, 0.94, 0.92, 0.91, 0.90, 0.89, 0.88, 0.87, 0.7112]
OTHER = [0.93, 0.7105, 0.2, 0.1]


def test_at_the_boundary_the_threshold_written_reaches_the_target():
    t = choose_thresholds(*_windows(CAT, OTHER), TARGET)["cat"]
    assert t["target_met"] and t["precision"] >= TARGET
    assert t["precision"] == _precision_at(t["threshold"], CAT, OTHER)
    assert t["threshold"] == round(t["threshold"], 3) and t["threshold"] <= 0.7112
    assert _precision_at(t["threshold"] - 0.001, CAT, OTHER) < TARGET  # the lowest that does


def test_a_class_short_of_the_target_says_so_with_its_precision():
    cat = [0.95, 0.90, 0.85, 0.80, 0.75]
    other = [0.97, 0.96, 0.5]  # above every cat window: no threshold reaches 0.9
    thresholds = choose_thresholds(*_windows(cat, other), TARGET)
    t = thresholds["cat"]
    assert not t["target_met"] and t["precision"] < TARGET
    assert t["precision"] == _precision_at(t["threshold"], cat, other)
    lines = threshold_lines(TARGET, thresholds)
    cat_line = next(line for line in lines if line.strip().startswith("cat "))
    assert f"< {TARGET:g}: target not met for cat" in cat_line
    assert lines[-1] == f"target precision {TARGET:g} not met for 1 of 2 classes: cat"


def test_a_precision_just_below_the_target_never_reads_as_the_target():
    assert shown_precision(0.89996, TARGET) < TARGET
    assert shown_precision(0.895, TARGET) == 0.895
    assert shown_precision(0.9, TARGET) == 0.9
    short = {"cat": {"threshold": 0.5, "target_met": False, "precision": 0.89996, "recall": 0.5}}
    line = next(line for line in threshold_lines(TARGET, short) if line.strip().startswith("cat "))
    shown = float(line.split("precision ")[1].split()[0])
    assert shown < TARGET and "target not met for cat" in line


def test_every_threshold_is_on_the_grid_and_never_below_the_floor():
    rng = np.random.default_rng(7)
    cat, other = rng.uniform(0, 1, 60).tolist(), rng.uniform(0, 0.6, 40).tolist()
    for name, t in choose_thresholds(*_windows(cat, other), TARGET).items():
        assert THRESHOLD_FLOOR <= t["threshold"] <= 1.0 and t["threshold"] == round(t["threshold"], 3)
        assert t["target_met"] == (t["precision"] >= TARGET)

