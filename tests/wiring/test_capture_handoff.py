"""The capture thread's hand-off to the processing loop: the loop sleeps until the audio it asked for (a window's
worth) has arrived, wakes at once for the end of a file or a new device generation, takes everything queued once
awake, and a full queue makes the producer wait."""

import threading
import time

import numpy as np

from edge.audio.capture import Capture, Handoff
from edge.config import AudioConfig

CHUNK = np.zeros(1024, np.int16)


def _get(handoff: Handoff, timeout_s: float):
    """What the daemon's loop does for one source: take what is queued, else sleep on the bell (cleared first: a
    ring for what was taken already must not end the sleep) and take again."""
    item = handoff.take()
    if item is None:
        handoff.bell.clear()
        item = handoff.take()
        if item is None:
            handoff.bell.wait(timeout_s)
            item = handoff.take()
    return item


def _get_later(handoff: Handoff, timeout_s: float, out: list) -> threading.Thread:
    def run():
        out.append(_get(handoff, timeout_s))
        out.append(time.monotonic())
    t = threading.Thread(target=run)
    t.start()
    return t


def test_the_loop_sleeps_until_what_it_wants_has_arrived():
    h = Handoff(64)
    h.put((1, CHUNK), 1024, 1.0)  # a new generation: handed over at once
    assert _get(h, 0.0) == (1, CHUNK) and _get(h, 0.0) is None
    h.wanted = 3000
    got: list = []
    t = _get_later(h, 5.0, got)
    h.put((1, CHUNK), 1024, 1.0)
    h.put((1, CHUNK), 1024, 1.0)
    time.sleep(0.3)
    assert not got, "woken before a window's worth of audio was there"
    sent = time.monotonic()
    h.put((1, CHUNK), 1024, 1.0)  # 3072 >= 3000
    t.join(2.0)
    assert got[0] == (1, CHUNK) and got[1] - sent < 0.5
    assert _get(h, 0.0) is not None and _get(h, 0.0) is not None  # awake: the rest without waiting
    assert _get(h, 0.0) is None


def _waiting_for_much(out: list) -> tuple[Handoff, threading.Thread]:
    """A hand-off whose loop has taken everything and sleeps until far more audio than a read has arrived."""
    h = Handoff(64)
    h.put((1, CHUNK), 1024, 1.0)
    _get(h, 0.0)
    _get(h, 0.0)
    h.wanted = 100000
    return h, _get_later(h, 5.0, out)


def test_the_end_of_a_file_wakes_the_loop_at_once():
    got: list = []
    h, t = _waiting_for_much(got)
    time.sleep(0.1)
    h.put((1, None), 0, 1.0)
    t.join(2.0)
    assert got and got[0] == (1, None)


def test_nothing_arrives_is_none_after_the_timeout():
    h = Handoff(4)
    t0 = time.monotonic()
    assert _get(h, 0.2) is None
    assert 0.15 < time.monotonic() - t0 < 1.5


def test_a_full_queue_makes_the_producer_wait_for_room():
    h = Handoff(2)
    assert h.put((1, CHUNK), 1024, 0.1) and h.put((1, CHUNK), 1024, 0.1)
    assert not h.put((1, CHUNK), 1024, 0.1)  # full for 0.1 s: the caller tries again (nothing is dropped here)
    done: list = []
    t = threading.Thread(target=lambda: done.append(h.put((1, CHUNK), 1024, 2.0)))
    t.start()
    time.sleep(0.1)
    assert _get(h, 0.0) is not None  # room for one
    t.join(2.0)
    assert done == [True] and len(h) == 2


def test_a_chunk_where_a_sound_begins_wakes_the_loop_at_once():
    got: list = []
    h, t = _waiting_for_much(got)
    h.put((1, CHUNK), 1024, 1.0)
    time.sleep(0.2)
    assert not got
    sent = time.monotonic()
    h.put((1, CHUNK), 1024, 1.0, urgent=True)
    t.join(2.0)
    assert got and got[0] == (1, CHUNK) and got[1] - sent < 0.5


class _Reads:
    """A source that delivers `pcm` in 1024-frame reads, then the end of the file."""

    def __init__(self, pcm):
        self.name, self.rate_hz, self.channels, self.overruns = "reads", 16000, 1, 0
        self._chunks = [pcm[i:i + 1024] for i in range(0, pcm.size, 1024)]

    def open(self):
        pass

    def read(self):
        return self._chunks.pop(0) if self._chunks else None

    def close(self):
        pass


def test_at_the_end_of_a_file_the_capture_thread_tells_a_sound_it_has_not_looked_at_yet():
    began = 40 * 1024 + 300  # in the last reads: fewer than 0.3 s of audio follow it
    pcm = np.zeros(began + 1500, np.int16)
    pcm[began:] = (np.sin(np.arange(1500) * 0.3) * 8000).astype(np.int16)
    capture = Capture(_Reads(pcm), AudioConfig())
    capture.onset_lead_seconds = 0.3
    capture.start()
    items = []
    while not items or items[-1][1] is not None:
        item = _get(capture.handoff, 2.0)
        assert item is not None, "the capture thread stopped delivering"
        items.append(item)
    capture.stop()
    assert [onset for *_, onset in items[:-1]] == [-1] * (len(items) - 1)  # looked at only once the file ended
    behind = items[-1][2]  # frames before the end of the last read
    assert abs((pcm.size - behind) - began) <= 160  # within a 10 ms block of where the sound began


def test_what_the_loop_took_counts_no_more_towards_its_next_wake_up():
    """The loop takes what is queued and wants 2000 more frames: one more 1024-frame read must not wake it (it would
    wake at every read instead of once a window)."""
    chunk = np.zeros(1024, np.int16)
    handoff = Handoff(8)
    handoff.wanted = 2000
    assert handoff.put((1, chunk, -1), 1024, 0.1)
    handoff.bell.clear()  # a new generation rings at once; the loop takes it
    assert handoff.take() is not None
    assert handoff.put((1, chunk, -1), 1024, 0.1) and not handoff.bell.is_set()
    assert handoff.put((1, chunk, -1), 1024, 0.1) and handoff.bell.is_set()  # 2048 frames since it took: wake
