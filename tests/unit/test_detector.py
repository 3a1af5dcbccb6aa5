"""Scores -> events, with hand-made score sequences (pure unit tests)."""

import numpy as np
import pytest

from edge.core.detector import Detector, DetectorParams, LabelError, level_dbfs

LABELS = ["Speech", "Dog", "Cat", "Music"]
HOP = 0.5


def run(det, series, label=1, levels=None):
    """series: the score of `label` per window; the other classes stay at 0. levels: dBFS per window (default:
    -60 for a window scoring below 0.05, else -20: sounds begin louder than what came before)."""
    events = []
    for i, value in enumerate(series):
        scores = np.zeros(len(LABELS), np.float32)
        scores[label] = value
        level = levels[i] if levels is not None else (-60.0 if value < 0.05 else -20.0)
        events += [(i, e.type, e.label) for e in det.update(scores, i * HOP, i * HOP + 0.975, level)]
    return events


def det(**kw):
    return Detector(LABELS, DetectorParams(**{"smoothing_windows": 1, "hold_seconds": 0.0, **kw}))


def test_start_and_end_with_hysteresis():
    # up at 0.6, stays above the off threshold (0.35) at 0.4, ends at 0.1
    assert run(det(), [0.1, 0.6, 0.4, 0.4, 0.1]) == [(1, "start", "Dog"), (4, "end", "Dog")]


def test_a_dip_shorter_than_the_hold_does_not_end_the_event():
    d = det(hold_seconds=1.0)
    # the dip at window 1 lasts 0.5 s; after window 2 the score stays down: 1 s of hold is two hops
    assert run(d, [0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1]) == [(0, "start", "Dog"), (4, "end", "Dog")]


def test_minimum_duration_suppresses_blips():
    assert run(det(min_duration_seconds=1.5), [0.1, 0.9, 0.1, 0.1]) == []
    assert run(det(min_duration_seconds=1.0), [0.9, 0.9, 0.9, 0.1])[0] == (1, "start", "Dog")


def test_cooldown_after_end():
    events = run(det(cooldown_seconds=2.0), [0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.9, 0.1])
    assert [k for _, k, _ in events] == ["start", "end", "start", "end"] and events[2][0] == 6


def test_smoothing_averages_windows():
    slow = {"onset_threshold": 1.0}  # the fast onset off: only the average starts events
    assert run(det(smoothing_windows=3, **slow), [0.9, 0.0, 0.0]) == []  # a single loud window averages to 0.3
    assert run(det(smoothing_windows=2, **slow), [0.9, 0.9])[0] == (1, "start", "Dog")


def test_fast_onset_starts_on_one_window_over_the_higher_bar_and_the_average_ends_it():
    # window 1 begins a sound (20 dB louder) and clears the onset bar (0.7): start at once; the average (0.3) is
    # below the off level, so it ends as soon as the hold allows
    assert run(det(smoothing_windows=3), [0.0, 0.9, 0.0, 0.0]) == [(1, "start", "Dog"), (2, "end", "Dog")]
    # below the bar, a first loud window waits for the average, as before
    assert run(det(smoothing_windows=2), [0.0, 0.6, 0.6]) == [(2, "start", "Dog")]
    assert run(det(smoothing_windows=2), [0.0, 0.6, 0.0]) == []
    # a label whose own threshold is above the bar needs its own threshold
    assert run(det(smoothing_windows=2, thresholds={"Dog": 0.95}), [0.0, 0.9, 0.0]) == []
    assert run(det(smoothing_windows=2, thresholds={"Dog": 0.95}), [0.0, 0.96, 0.0])[0] == (1, "start", "Dog")
    # the bar is the setting's
    assert run(det(smoothing_windows=2, onset_threshold=0.6), [0.0, 0.65, 0.0])[0] == (1, "start", "Dog")
    # minimum duration still applies to a fast start
    assert run(det(smoothing_windows=3, min_duration_seconds=1.5), [0.0, 0.9, 0.0, 0.0]) == []
    assert run(det(smoothing_windows=3, min_duration_seconds=1.5), [0.0, 0.9, 0.9, 0.9])[0] == (3, "start", "Dog")


def test_fast_onset_needs_a_sound_that_begins():
    """A window over the bar that is no louder than the one before (a spike within a sound that goes on, or steady
    background) waits for the average like any other."""
    assert run(det(smoothing_windows=3), [0.0, 0.9, 0.0], levels=[-30.0, -30.0, -30.0]) == []
    assert run(det(smoothing_windows=3), [0.0, 0.9, 0.0], levels=[-30.0, -28.0, -30.0]) == []  # 2 dB: not enough
    assert run(det(smoothing_windows=3, onset_rise_db=0.0), [0.0, 0.9, 0.0],
               levels=[-30.0, -30.0, -30.0])[0] == (1, "start", "Dog")
    assert run(det(smoothing_windows=3), [0.9, 0.0, 0.0], levels=[-20.0, -60.0, -60.0]) == []  # the first window


def test_an_allow_list_changes_only_which_classes_are_worked_on():
    """Watching a subset gives exactly the events of those labels that watching everything gives."""
    rng = np.random.default_rng(3)
    everything, subset = det(smoothing_windows=2, hold_seconds=0.5), det(smoothing_windows=2, hold_seconds=0.5,
                                                                            allow=["Cat", "Dog"])
    got = {"all": [], "subset": []}
    for i in range(400):
        scores = (rng.random(len(LABELS)) ** 4).astype(np.float32)
        level = float(rng.uniform(-50.0, -20.0))
        for key, d in (("all", everything), ("subset", subset)):
            got[key] += [(i, e.type, e.label, round(e.peak_score, 4)) for e in d.update(scores, i * HOP,
                                                                                     i * HOP + 0.975, level)]
    assert [e for e in got["all"] if e[2] in ("Cat", "Dog")] == got["subset"] and got["subset"]


def test_allow_deny_and_per_label_thresholds():
    d = det(allow=["dog", "Cat"], deny=["Cat"], thresholds={"Dog": 0.8})
    assert [LABELS[i] for i in d.watched] == ["Dog"]
    assert run(d, [0.7, 0.7]) == []  # below its own threshold
    assert run(det(allow=["Cat"]), [0.9, 0.9], label=1) == []  # not watched


def test_unknown_label_names_the_key_and_suggests():
    with pytest.raises(LabelError, match=r"detector\.allow: unknown label 'Do'; did you mean 'Dog'"):
        Detector(LABELS, DetectorParams(allow=["Do"]))


def test_events_carry_scores_ids_and_durations():
    d = det()
    d.with_fields(device_id="pi", model="m", delegate="cpu")
    out = []
    for i, v in enumerate([0.6, 0.8, 0.1]):
        s = np.zeros(4, np.float32)
        s[1] = v
        out += d.update(s, 100 + i * HOP, 100 + i * HOP + 0.975, -30.0 + i)
    start, end = out
    assert start.event_id == end.event_id and end.end_ts == pytest.approx(100 + HOP + 0.975)
    assert end.peak_score == pytest.approx(0.8) and end.mean_score == pytest.approx(0.7)
    assert end.duration_s == pytest.approx(HOP + 0.975) and end.level_dbfs == pytest.approx(-29.0)
    payload = end.to_dict()
    assert payload["schema"] == 1 and payload["device_id"] == "pi" and payload["end_time"].endswith("Z")


def test_flush_ends_active_events():
    d = det()
    run(d, [0.9])
    assert [e.type for e in d.flush()] == ["end"] and d.active_labels == []


def test_level_dbfs():
    t = np.arange(16000) / 16000
    assert level_dbfs(np.sin(2 * np.pi * 440 * t).astype(np.float32)) == pytest.approx(-3.01, abs=0.01)
    assert level_dbfs(np.zeros(100, np.float32)) == -120.0


def layered(params, bundle):
    """A bundle's thresholds beneath the configuration's, as the daemon applies them (edge.core.thresholds)."""
    from edge.core.thresholds import ThresholdLayers
    return ThresholdLayers.of(params, bundle=bundle).apply(params)


def test_bundle_thresholds_sit_beneath_the_config_and_name_the_watched_labels():
    bundle = {"Dog": 0.8, "Cat": 0.3}
    plain = layered(DetectorParams(), bundle)
    assert plain.thresholds == bundle and plain.allow == ["Dog", "Cat"]
    det = Detector(LABELS, plain)
    assert det.on[1] == pytest.approx(0.8) and det.on[2] == pytest.approx(0.3) and det.on[0] == 0.5
    assert sorted(det.watched.tolist()) == [1, 2]  # "Speech" and "Music" have no bundle threshold
    configured = layered(DetectorParams(thresholds={"Dog": 0.6}, allow=["Dog", "Music"]), bundle)
    assert configured.thresholds == {"Dog": 0.6, "Cat": 0.3} and configured.allow == ["Dog", "Music"]
    assert layered(DetectorParams(), {}) == DetectorParams()


def test_an_onset_window_starts_on_its_raw_score_and_leaves_the_average_alone():
    d = det(smoothing_windows=2, onset_threshold=0.6, hold_seconds=1.0)
    quiet = np.zeros(len(LABELS), np.float32)
    assert d.update(quiet, 0.0, 0.975, -60.0) == ()
    loud = np.zeros(len(LABELS), np.float32)
    loud[1] = 0.65
    below = loud * np.float32(0.9)  # 0.585: under the bar
    assert d.onset(below, 0.2, 1.175, -20.0) == ()
    started = d.onset(loud, 0.2, 1.175, -20.0)
    assert [(e.type, e.label, e.start_ts) for e in started] == [("start", "Dog", 0.2)]
    assert d.onset(loud, 0.3, 1.275, -20.0) == []  # already active: nothing new
    # the average was not fed by the onset windows: the grid's next window (0.4 with the quiet one: 0.2 mean)
    # is under the off bar, and the hold keeps the event until 1 s after the onset window's end
    mid = np.zeros(len(LABELS), np.float32)
    mid[1] = 0.4
    assert d.update(mid, 0.48, 1.455, -20.0) == []
    ends = [*d.update(quiet, 1.44, 2.415, -60.0), *d.update(quiet, 1.92, 2.895, -60.0)]
    assert [(e.type, e.label) for e in ends] == [("end", "Dog")]


def test_onset_windows_are_wanted_only_with_the_fast_onset_on():
    assert det().cfg.onset_lead_seconds > 0  # what the daemon, the bench and the onset tool ask
    assert not det(onset_threshold=1.0).cfg.onset_lead_seconds > 0
    assert not det(onset_window_seconds=0.0).cfg.onset_lead_seconds > 0
    assert det(onset_threshold=1.0).onset(np.ones(len(LABELS), np.float32), 0, 1, -20.0) == ()
