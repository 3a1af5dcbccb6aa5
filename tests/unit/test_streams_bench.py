"""`python -m tools streams-bench`, its pure parts on made-up figures: the search for the largest N, what two
metrics payloads say, the per-source rows, the board estimate, the result's shape and the lines printed. Nothing
here starts a daemon or reads a clock."""

import argparse
import json

import pytest

from edge.core.errors import InputError
from tools.bench import streamcalc as calc
from tools.bench.streams import assemble, cmd
from tools.commands import build_parser


def _fake(limit: int):
    """A measure() whose daemon holds up to `limit` sources, with made-up figures that grow with N."""
    def measure(n: int) -> dict:
        sources = {f"s{i:03d}": {"windows": 40 + (n > limit) * 0, "onset_windows": 20, "missed_windows": 0,
                                 "latency_p50_ms": 1.0 + i, "latency_p99_ms": 10.0 + i} for i in range(n)}
        first = {"uptime_s": 5.0, "sources": {s: {"windows": 0, "onset_windows": 0, "missed_windows": 0}
                                              for s in sources}}
        if n > limit:
            for p in sources.values():
                p["missed_windows"] = 5
        last = {"uptime_s": 24.2, "sources": sources}
        span = calc.span(first, last, 0.48)
        before, after = {100: 1.0, 101: 0.5}, {100: 1.0 + 0.01 * n, 101: 0.6}
        after.update({200 + i: 0.002 for i in range(n)})
        threads = calc.thread_split(before, after, 100, n, span["seconds"])
        return {"n": n, "holds": span["missed_fraction"] <= calc.MISSED_MAX, "span": span,
                "cpu_s": threads["cpu_s"], "cpu_percent": threads["percent"]["all"],
                "threads_percent": threads["percent"], "peak_rss_mib": 57.0 + 0.6 * (n - 1),
                "fairness": calc.fairness(last), "exit": 0}
    return measure


def test_the_search_doubles_then_halves_the_gap():
    tried = []
    best, runs = calc.search(lambda n: tried.append(n) or {"n": n, "holds": n <= 100}, 8, 256, 2)
    assert tried == [8, 16, 32, 64, 128, 96, 112] and best == 96
    assert [r["n"] for r in runs] == tried


def test_the_search_stops_at_its_limit_and_goes_below_its_start():
    best, runs = calc.search(lambda n: {"n": n, "holds": True}, 8, 256, 2)
    assert best == 256 and [r["n"] for r in runs] == [8, 16, 32, 64, 128, 256]
    best, runs = calc.search(lambda n: {"n": n, "holds": n <= 3}, 8, 256, 2)
    assert best == 2 and [r["n"] for r in runs] == [8, 4, 2]
    assert calc.search(lambda n: {"n": n, "holds": False}, 1, 8, 3)[0] == 0


def test_two_metrics_payloads_make_a_span():
    first = {"uptime_s": 10.0, "sources": {"a": {"windows": 10, "onset_windows": 2, "missed_windows": 1}}}
    last = {"uptime_s": 19.6, "sources": {"a": {"windows": 28, "onset_windows": 5, "missed_windows": 2},
                                          "b": {"windows": 20, "onset_windows": 0, "missed_windows": 0}}}
    s = calc.span(first, last, 0.48)
    assert s["sources"] == 2 and s["expected_windows"] == 40.0
    assert (s["windows"], s["onset_windows"], s["missed_windows"]) == (38, 3, 1)
    assert s["missed_fraction"] == 0.025


def test_fairness_and_a_fastest_source_that_never_waits():
    payload = {"sources": {"a": {"latency_p50_ms": 2.0, "latency_p99_ms": 9.0},
                           "b": {"latency_p50_ms": 5.0, "latency_p99_ms": 30.0}}}
    assert calc.fairness(payload)["ratio"] == 2.5 and calc.fairness(payload)["worst_p99_ms"] == 30.0
    payload["sources"]["a"]["latency_p50_ms"] = 0.0
    assert calc.fairness(payload)["ratio"] is None


def test_thread_split_names_the_loop_the_captures_and_the_rest():
    t = calc.thread_split({1: 1.0, 2: 1.0, 5: 0.0, 6: 0.0}, {1: 2.0, 2: 1.5, 5: 0.25, 6: 0.25}, 1, 2, 10.0)
    assert t["percent"] == {"loop": 10.0, "capture": 5.0, "other": 5.0, "all": 20.0} and t["cpu_s"] == 2.0


def test_per_source_rows_and_the_estimate_arithmetic():
    span = {"missed_fraction": 0.0}
    runs = [{"n": 1, "holds": True, "cpu_percent": 1.5, "peak_rss_mib": 57.0, "span": span},
            {"n": 65, "holds": True, "cpu_percent": 33.5, "peak_rss_mib": 89.0, "span": span},
            {"n": 130, "holds": False, "failed": "no metrics payload 1 from streams130 in 45 s"}]
    rows = calc.per_source(runs)
    assert len(rows) == 2 and "rss_per_extra_source_mib" not in rows[0]
    assert rows[1]["rss_per_extra_source_mib"] == 0.5 and rows[1]["cpu_percent_per_extra_source"] == 0.5
    boards = {"board": {"cpu_factor": 5.0, "invoke_ms": 1.6, "from": "a stated assumption"}}
    est = calc.estimate(1.0, 3.0, 0.8, boards)["board"]
    assert est["ms_per_window"] == 6.6 and est["sources"] == 50  # 1000 / (6.6 ms x 3 windows a second)
    assert est["at_load"] == 40  # 80 % of that second
    cost = calc.window_cost_ms({"n": 10, "cpu_s": 3.0, "span": {"windows": 1000, "onset_windows": 500,
                                                                "seconds": 50.0}}, 0.5)
    assert cost == {"cpu_ms_per_window": 2.0, "invoke_ms": 0.5, "rest_ms_per_window": 1.5,
                    "windows_per_source_s": 3.0}


def test_the_result_and_its_lines_from_a_fake_daemon():
    measure = _fake(100)
    base = measure(1)
    best, runs = calc.search(measure, 8, 256, 2)
    args = argparse.Namespace(audio="a.wav", hop=0.48, cpu=0, seconds=20.0, interval=5.0, detector="all",
                              delegate="cpu", limit=256)
    sep = {"n": 8, "seconds": 6.0, "cpu_separate_percent": 12.0, "cpu_one_percent": 6.0,
           "cpu_ratio": {"median": 2.0, "min": 1.8, "max": 2.2, "rounds": 5}, "rss_separate_mib": 460.0,
           "rss_one_mib": 62.0, "rss_ratio": 7.42, "pss_separate_mib": 230.0, "pss_one_mib": 40.0, "pss_ratio": 5.75}
    result = json.loads(json.dumps(assemble(args, "m.tflite", 0.5, best, [base, *runs], sep)))
    assert result["max_sources"] == 96 and [r["n"] for r in result["runs"]] == [1, 8, 16, 32, 64, 128, 96, 112]
    assert set(result) >= {"runs", "per_source", "separate", "cost", "estimate", "targets", "max_sources"}
    assert result["cost"]["n"] == 96 and set(result["estimate"]) == set(calc.BOARDS)
    out = calc.lines(result)
    assert out[0].startswith("sources at real time on one core (taskset -c 0)") and out[0].endswith("NOT met")
    assert "tried 1, 8, 16, 32, 64, 128 x, 96, 112 x" in out[0]
    assert any(l.startswith("RSS per extra source: at most 614 KiB") and l.endswith(": met") for l in out)
    assert any(l.startswith("fairness at N = 96") and "96.00x" in l and l.endswith("NOT met") for l in out)
    assert any(l.startswith("8 single-source daemons vs one daemon with 8 sources") for l in out)
    assert any(l.startswith("ESTIMATE — not measured on a board") for l in out)
    assert sum("sources at real time with the classifying thread always busy" in l for l in out) == len(calc.BOARDS)


def test_the_command_parses_and_refuses_what_it_cannot_run(tmp_path):
    args = build_parser("streams-bench").parse_args(["streams-bench", "--audio", str(tmp_path / "none.wav")])
    assert (args.start, args.limit, args.separate, args.cpu) == (8, 256, 8, 0)
    with pytest.raises(InputError, match="not found"):
        cmd(args)
    args.limit = 1000
    with pytest.raises(InputError, match="limit"):
        cmd(args)


def test_bench_targets_reports_the_streams_targets_from_their_result(tmp_path):
    import json

    from tools.bench.targets import lines
    result = {"targets": {"sources": 100, "rss_per_source_mib": 1.0, "fairness": 2.0}, "max_sources": 128,
              "limit": 256, "per_source": [{"n": 1}, {"n": 8, "rss_per_extra_source_mib": 0.6}],
              "runs": [{"n": 128, "holds": True, "fairness": {"slowest_p50_ms": 90.0, "fastest_p50_ms": 60.0,
                                                              "ratio": 1.5}},
                       {"n": 256, "holds": False, "fairness": None}]}
    (tmp_path / "streams.json").write_text(json.dumps(result))
    said = [l for l in lines(tmp_path) if "source" in l]
    assert said[0].startswith("sources at real time on one core") and said[0].endswith("(target >= 100): met")
    assert said[1] == "resident memory per extra source: at most 614 KiB (target <= 1 MiB): met"
    assert said[2].startswith("fairness at 128 sources") and said[2].endswith("1.50x (target <= 2x): met")
    assert "many sources in one daemon: not measured (bench-streams did not run)" in lines(tmp_path / "none")
