"""A source's clip taps: the pre-roll reaches back from an event's start to what the ring still holds, the end
fixes the clip's last sample (end + post, within max), only audio no window to come covers is taken, and the
privacy filter withholds a clip a speech window falls in, or silences that window's stretch."""

import numpy as np

from edge.core.clipparams import ClipParams
from edge.core.cliptap import WITHHELD, ClipTaps
from edge.core.framing import Framer

RATE, WINDOW, HOP = 16000, 15600, 7680
SPEECH = np.array([0], np.int64)  # class 0 is speech in these scores


def _taps(**params) -> ClipTaps:
    return ClipTaps(ClipParams(enabled=True, **params), SPEECH, WINDOW, HOP, RATE, 5 * RATE)


def _scores(speech: float) -> np.ndarray:
    s = np.zeros(4, np.float32)
    s[0], s[2] = speech, 0.9
    return s


def _taken(taps: ClipTaps, horizon: int, oldest: int = 0) -> tuple[list, list]:
    sent = []
    done = taps.take(horizon, oldest, lambda tap, a, b, muted: sent.append((a, b, muted)))
    return sent, done


def test_the_pre_roll_reaches_back_to_what_the_ring_holds_and_the_end_adds_the_post_roll():
    taps = _taps()
    tap = taps.open("e1", "Dog", event_start=10 * RATE, oldest=8 * RATE)
    assert tap.begin == 8 * RATE  # 3 s wanted, 2 s held
    tap = taps.open("e2", "Dog", event_start=20 * RATE, oldest=0)
    assert tap.begin == 17 * RATE and tap.limit == 17 * RATE + 30 * RATE
    taps.close("e2", 25 * RATE)
    assert tap.limit == 27 * RATE and not tap.too_long
    sent, done = _taken(taps, 26 * RATE)
    assert (17 * RATE, 26 * RATE, []) in sent and tap not in done  # not whole yet: 1 s to come
    sent, done = _taken(taps, 40 * RATE)
    assert (26 * RATE, 27 * RATE, []) in sent and tap in done and tap.complete


def test_an_event_longer_than_max_seconds_keeps_its_first_part_and_says_so():
    taps = _taps(max_seconds=10.0)
    tap = taps.open("e", "Dog", event_start=5 * RATE, oldest=0)
    _taken(taps, 60 * RATE)
    taps.close("e", 50 * RATE)
    assert tap.too_long and tap.limit == 2 * RATE + 10 * RATE and tap.pos == tap.limit


def test_a_speech_window_over_the_clip_withholds_it_and_one_before_its_pre_roll_does_not():
    taps = _taps()
    taps.note(0, _scores(0.9))  # speech in [0, 15600): before the clip's pre-roll
    for k in range(1, 12):
        taps.note(k * HOP, _scores(0.0))
    tap = taps.open("e", "Dog", event_start=5 * RATE, oldest=0)  # the clip begins at 2 s
    sent, done = _taken(taps, 6 * RATE)
    assert sent and not done and not tap.status
    taps.note(12 * HOP, _scores(0.5))  # speech inside the clip's span
    sent, done = _taken(taps, 7 * RATE)
    assert done == [tap] and tap.status == WITHHELD and not sent and not taps.open_taps


def test_mute_silences_the_stretch_of_each_speech_window_and_a_speech_label_asked_for_is_not_filtered():
    taps = _taps(privacy="mute")
    for k in range(12):
        taps.note(k * HOP, _scores(0.9 if k == 8 else 0.0))
    tap = taps.open("e", "Dog", event_start=5 * RATE, oldest=0)
    sent, _ = _taken(taps, 8 * RATE)
    assert sent == [(2 * RATE, 8 * RATE, [(8 * HOP, 8 * HOP + WINDOW)])]
    assert not tap.status
    asked = _taps(labels=["Speech"])
    assert not asked.open("s", "Speech", 5 * RATE, 0).filtered and asked.open("d", "Dog", 5 * RATE, 0).filtered
    assert not ClipParams().wanted("Speech") and ClipParams().wanted("Dog")


def test_a_framer_with_history_keeps_it_readable_and_still_skips_a_backlog_as_without():
    chunk = np.arange(4096, dtype=np.int16)
    plain, kept = Framer(WINDOW, HOP), Framer(WINDOW, HOP, history_samples=5 * RATE)
    for framer in (plain, kept):
        for _ in range(40):  # a consumer far behind: the oldest windows are skipped
            framer.push(chunk)
        assert framer.next_window() is not None
    assert kept.skipped_windows == plain.skipped_windows > 0
    out = np.zeros(4 * RATE, np.int16)
    kept.ring.copy_to(kept.ring.written - 6 * RATE, out)  # the pre-roll behind the windows is there
    assert np.array_equal(out[:4096], np.resize(chunk, kept.ring.written)[kept.ring.written - 6 * RATE:][:4096])
