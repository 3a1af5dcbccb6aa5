"""`python -m tools clips-bench`, its pure calculation on made-up clip records (nothing starts a daemon)."""

from tools.bench.clips import MIB, clip_figures, per_audio_second_ms


def test_clip_figures_count_the_kept_clips_and_scale_their_mean_size_to_a_day():
    records = [{"file": "a.flac", "bytes": 100 * 1024, "seconds": 10.0, "status": "kept"},
               {"file": "b.flac", "bytes": 300 * 1024, "seconds": 10.0, "status": "kept"},
               {"file": None, "seconds": 0.0, "status": "withheld: speech"},
               {"file": None, "seconds": 0.0, "status": "skipped: queue full"}]
    f = clip_figures(records, events_per_day=100)
    assert (f["kept"], f["withheld"], f["skipped"]) == (2, 1, 1)
    assert (f["mean_seconds"], f["mean_bytes"], f["bytes_per_second"]) == (10.0, 200 * 1024, 20 * 1024)
    assert f["mib_per_day"] == 200 * 1024 * 100 / MIB
    assert clip_figures([])["mib_per_day"] == 0.0 and per_audio_second_ms(0.012, 2.0) == 6.0
