"""`python -m tools bench-targets`: each target read back from the results make bench's parts wrote, with its
verdict, and a line saying so for a part that did not run."""

import json

from tools.bench.goals import TARGETS
from tools.bench.targets import lines


def _run(e2e: float) -> dict:
    return {"runs": [{"status": "ok", "input_kind": "logmel_patch", "model": "m.tflite", "delegate": "cpu",
                      "e2e_over_invoke": {"median": e2e, "min": e2e - 0.01, "max": e2e + 0.01, "rounds": 5},
                      "invoke_ms": {"p50": 0.5}, "e2e_ms": {"p50": 0.5 * e2e}}]}


def test_every_target_with_its_figure_and_verdict(tmp_path):
    (tmp_path / "runtime-bundle.json").write_text(json.dumps(_run(1.10)))
    (tmp_path / "runtime-bundle-hop04875.json").write_text(json.dumps(_run(1.30)))
    (tmp_path / "side_by_side.json").write_text(json.dumps(
        {"ratios": {"kit_coral_over_mediapipe": {"median": 3.2, "min": 3.0, "max": 3.4, "rounds": 7}}}))
    (tmp_path / "daemon_bench.json").write_text(json.dumps(
        {"daemon_peak_rss_mb": 60.0, "bare_litert_peak_rss_mb": 48.0, "rss_overhead_mb": 12.0, "seconds": 10,
         "cpu_ratio": {"median": 1.2, "min": 1.1, "max": 1.25, "rounds": 5}}))
    out = lines(tmp_path)
    assert out[0].endswith(f"(target <= {TARGETS['e2e_default']}x): met") and "median 1.100x" in out[0]
    assert out[1].endswith(f"(target <= {TARGETS['e2e_off_grid']}x): NOT met") and "median 1.300x" in out[1]
    assert out[2].endswith("(target >= 3x): met") and "median 3.20x (range 3.00-3.40, 7 paired rounds)" in out[2]
    assert "+12.0 MiB" in out[3] and out[3].endswith("NOT met")
    assert "median 1.20x (range 1.10-1.25, 5 paired rounds of 10 s)" in out[4] and out[4].endswith(": met")
    assert out[5] == "many sources in one daemon: not measured (bench-streams did not run)"
    assert out[6].startswith("onset latency and false starts: not measured")


def test_parts_that_did_not_run_say_so(tmp_path):
    out = lines(tmp_path)
    assert [l.split(":")[0] for l in out] == ["end to end / bare invoke, hop 0.48 s",
                                              "end to end / bare invoke, hop 0.4875 s", "windows/s, kit / MediaPipe",
                                              "daemon RSS and CPU", "many sources in one daemon",
                                              "onset latency and false starts"]
    assert all("not measured" in l for l in out)
