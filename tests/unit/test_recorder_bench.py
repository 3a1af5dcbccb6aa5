"""The recorder bench's calculations: percentiles, a step's figures, keeping up, memory growth and the verdicts."""

import pytest

from tools.bench.recorder import (
    growth_per_10k,
    kept_up,
    memory_verdict,
    percentile,
    rate_verdict,
    step_figures,
)


def test_percentile_is_linear_between_ranks_like_numpy():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 99) == 0.0


def test_step_figures_count_the_steady_window_only():
    start = 1000.0
    # one message published every 0.01 s for 10 s, each stored 0.05 s later (the last ones after the step)
    pairs = [(start + i / 100, start + i / 100 + 0.05) for i in range(1000)]
    fig = step_figures(pairs, start, seconds=10.0, warmup_s=2.0, published=1000, stored_total=1000,
                       expected_total=1000)
    assert fig["window_s"] == 8.0
    assert fig["stored_per_s"] == pytest.approx(100.0, abs=0.2)  # received in [1002, 1010)
    assert fig["latency_n"] == 800  # published in [1002, 1010)
    assert fig["p99_s"] == pytest.approx(0.05)
    assert fig["lost"] == 0


def test_step_figures_say_what_the_store_misses():
    fig = step_figures([], 0.0, 10.0, 2.0, published=500, stored_total=1400, expected_total=1500)
    assert fig["lost"] == 100 and fig["stored_per_s"] == 0.0 and fig["p99_s"] == 0.0


def test_kept_up_needs_no_loss_a_p99_under_a_second_and_the_rate():
    ok = {"lost": 0, "p99_s": 0.2, "stored_per_s": 1970.0}
    assert kept_up(ok, 2000)
    assert not kept_up({**ok, "lost": 1}, 2000)
    assert not kept_up({**ok, "p99_s": 1.0}, 2000)
    assert not kept_up({**ok, "stored_per_s": 1890.0}, 2000)


def test_growth_per_10k():
    assert growth_per_10k(40.0, 41.0, 10000, 60000) == pytest.approx(0.2)
    assert growth_per_10k(40.0, 39.0, 0, 10000) == pytest.approx(-1.0)
    assert growth_per_10k(40.0, 50.0, 5, 5) == 0.0


def _step(offered, stored, p99, ok, lost=0):
    return {"offered": offered, "stored_per_s": stored, "p99_s": p99, "kept_up": ok, "lost": lost}


def test_rate_verdict_takes_the_first_sqlite_step_at_the_target_that_kept_up():
    engines = {"sqlite": {"steps": [_step(1000, 1000, 0.01, True), _step(2000, 1990, 0.02, True),
                                    _step(3000, 2900, 0.05, True)]},
               "postgresql": {"steps": [_step(2000, 900, 2.0, False)]}}
    met, said = rate_verdict(engines)
    assert met and said.startswith("2000 ev/s offered, 1990 stored/s")


def test_rate_verdict_not_met_says_the_best_step_and_the_one_at_the_target():
    met, said = rate_verdict({"sqlite": {"steps": [_step(1000, 1000, 0.01, True),
                                                   _step(2000, 1500, 1.4, False, lost=3000)]}})
    assert not met
    assert "best kept up: 1000 ev/s" in said and "lost 3000" in said
    assert rate_verdict({}) == (False, "not measured (SQLite was not run)")


def test_memory_verdict_on_every_engine_measured():
    def mem(g):
        return {"memory": {"rss_start_mib": 40.0, "rss_end_mib": 40.0 + g, "stored_between": 10000,
                           "growth_mib_per_10k": g}}
    assert memory_verdict({"sqlite": mem(0.1), "postgresql": mem(0.0)})[0]
    met, said = memory_verdict({"sqlite": mem(0.1), "postgresql": mem(2.0)})
    assert not met and "postgresql: 40.0 -> 42.0 MiB" in said
    assert memory_verdict({"sqlite": {}}) == (False, "not measured")
