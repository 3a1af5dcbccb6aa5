"""Where a sound begins (edge.core.onsets) and the extra window the window loop adds there."""

import numpy as np
import pytest

from edge.core.onsets import REFRACTORY_S, LevelRise, StreamOnsets
from edge.core.stream import WindowLoop, hop_samples_for, recording_windows

RATE = 16000


def noise(seconds, amplitude=30.0, seed=1):
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * amplitude).astype(np.int16)


def tone(seconds, amplitude=8000.0):
    return (np.sin(np.arange(int(seconds * RATE)) * 0.3) * amplitude).astype(np.int16)


def scan_all(rise: LevelRise, pcm: np.ndarray, chunk: int = 1024) -> list[int]:
    found = []
    for i in range(0, pcm.size, chunk):
        at = rise.scan(pcm[i:i + chunk])
        if at >= 0:
            found.append(i + at)
    return found


@pytest.mark.parametrize("chunk", [1024, 100, 8192, 20000])
def test_a_sound_that_begins_is_found_within_a_block_whatever_the_chunks(chunk):
    onset = int(2.333 * RATE)
    pcm = np.concatenate([noise(2.333), tone(1.0), noise(1.0, seed=2)])
    found = scan_all(LevelRise(RATE), pcm, chunk)
    assert len(found) == 1 and abs(found[0] - onset) <= 160, found


def test_a_sound_that_goes_on_fades_in_or_is_quiet_is_no_onset():
    loud = tone(3.0)
    fade = (tone(3.0).astype(np.float64) * np.linspace(0, 1, 3 * RATE)).astype(np.int16)
    quiet = np.concatenate([np.zeros(RATE, np.int16), tone(1.0, amplitude=50.0)])  # below the floor
    for pcm in (loud, fade, quiet, noise(3.0)):
        assert scan_all(LevelRise(RATE), pcm) == []


def test_onsets_closer_than_the_refractory_time_count_once_and_stereo_44k1_works():
    rate = 44100
    burst = np.repeat((np.sin(np.arange(rate // 10) * 0.3) * 8000).astype(np.int16), 2)  # 0.1 s, stereo
    gap = np.zeros(rate // 5 * 2, np.int16)  # 0.2 s: within REFRACTORY_S of the first
    long_gap = np.zeros(int(rate * (REFRACTORY_S + 0.2)) * 2, np.int16)
    pcm = np.concatenate([np.zeros(rate * 2, np.int16), burst, gap, burst, long_gap, burst])
    rise = LevelRise(rate, channels=2)
    found = []
    for i in range(0, pcm.size, 2048):
        at = rise.scan(pcm[i:i + 2048])
        if at >= 0:
            found.append(i // 2 + at)
    assert len(found) == 2 and rise.onsets == 2


@pytest.mark.parametrize("chunk,channels", [(1024, 1), (100, 1), (4800, 1), (2048, 2)])
def test_looking_once_per_lead_finds_the_same_onsets_no_later_than_the_lead(chunk, channels):
    span = int(0.3 * RATE)
    pcm = np.concatenate([noise(2.333), tone(0.4), noise(0.3, seed=3), tone(0.5), noise(1.0, seed=2)])
    pcm = np.repeat(pcm, channels)
    rise, onsets = LevelRise(RATE, channels), StreamOnsets(RATE, channels, span)
    expected, found, told_at = [], [], []
    for i in range(0, pcm.size, chunk * channels):
        part = pcm[i:i + chunk * channels]
        at, behind = rise.scan(part), onsets.add(part)  # every read looked at, and once per lead
        end = (i + part.size) // channels
        if at >= 0:
            expected.append(i // channels + at)
        if behind >= 0:
            found.append(end - behind)
            told_at.append(end)
    assert len(expected) == 2 and found == expected
    for at, told in zip(found, told_at):  # the onset window (lead = span) is not complete before it is told
        assert told - at <= max(span, chunk), (at, told)


def test_chunks_held_for_the_next_look_are_let_go_once_scanned():
    onsets = StreamOnsets(RATE, 1, int(0.3 * RATE))
    chunks = [noise(0.064, seed=i) for i in range(5)]
    results = [onsets.add(c) for c in chunks]
    assert results == [-1] * 5  # noise: no onset
    assert onsets._held[0] is chunks[4] and onsets._held[1:] == [None] * 3  # a look after four reads let them go


def _windows(pcm, lead_s):
    loop = WindowLoop(15600, hop_samples_for(0.48), grid_samples=160, onset_lead_samples=round(lead_s * RATE))
    return [(start, loop.extra) for _, start in recording_windows(pcm, loop)]


def test_the_loop_adds_one_window_ending_the_lead_after_an_onset_on_the_frame_grid():
    onset = int(2.333 * RATE)
    pcm = np.concatenate([noise(2.333), tone(1.0), noise(2.0, seed=2)])
    plain = _windows(pcm, 0.0)
    with_onset = _windows(pcm, 0.4)
    extra = [s for s, e in with_onset if e]
    assert len(extra) == 1 and extra[0] % 160 == 0
    assert 0 <= extra[0] + 15600 - (onset + int(0.4 * RATE)) < 160 + 160  # ends the lead after the onset
    assert [w for w in with_onset if not w[1]] == plain  # the hop grid's windows are unchanged
    starts = [s for s, _ in with_onset]
    assert starts == sorted(starts)  # handed out in time order


def test_a_sound_that_begins_just_before_the_end_of_a_recording_keeps_its_onset_window():
    onset = int(2.333 * RATE)
    pcm = np.concatenate([noise(2.333), tone(0.1)])  # ends before the loop's next look at what it holds
    extra = [s for s, e in _windows(pcm, 0.3) if e]
    assert len(extra) == 1 and 0 <= extra[0] + 15600 - (onset + int(0.3 * RATE)) < 160 + 160


def test_no_extra_window_when_the_grid_has_one_as_soon():
    # the onset placed so that a grid window ends just after onset + lead: no extra window
    hop = hop_samples_for(0.48)
    grid_end = 5 * hop + 15600
    onset = grid_end - int(0.4 * RATE) - 80
    pcm = np.concatenate([noise(onset / RATE), tone(1.0), noise(2.0, seed=2)])
    assert not any(e for _, e in _windows(pcm, 0.4))
