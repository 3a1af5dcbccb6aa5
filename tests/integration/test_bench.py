"""`edge-audio bench`: the JSON result and its schema, --compare/--check against saved figures (regressions are
injected into saved results, so nothing here depends on how fast this machine is), board profiles, the
environment readers, the per-window callback, and one-line errors for bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_cli
from edge.bench import env as bench_env, report as bench_report
from edge.model import edgetpu
from edge.bench.measure import Audio, Pipeline, stats_ms
from edge.model.classifier import Classifier
from edge.core.errors import InputError

QUICK = ("--seconds", "0.2", "--realtime-seconds", "0.2")


@pytest.fixture(scope="module")
def coral_result(tmp_path_factory, coral_twin, class_map, assets) -> tuple[dict, Path]:
    """One real measurement of Coral's int8 twin (Edge TPU tried first), saved as JSON."""
    out = tmp_path_factory.mktemp("bench") / "result.json"
    r = run_cli("bench", "--model", coral_twin, "--labels", class_map, "--delegate", "all", "--threads", "1,2",
                "--audio", assets / "audio" / "miaow_16k.wav", *QUICK, "--json", "--out", out)
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    doc = json.loads(r.out)
    assert json.loads(out.read_text()) == doc
    return doc, out


def test_json_validates_against_its_schema(coral_result):
    doc, _ = coral_result
    assert bench_report.validate(doc) == []
    try:  # the schema is standard JSON Schema: a general validator agrees when one is installed
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(doc, bench_report.SCHEMA)


def test_result_has_every_figure_per_delegate_and_thread_count(coral_result):
    doc, _ = coral_result
    runs = doc["runs"]
    assert [(r["delegate"], r["threads"]) for r in runs] == [("edgetpu", 1), ("cpu", 1), ("cpu", 2)]
    tpu = runs[0]
    if edgetpu.locate_library() is None:
        assert tpu["status"] == "unavailable" and "libedgetpu" in tpu["reason"]
    for run in runs[1:]:
        assert run["status"] == "ok", run
        assert run["model"] == "yamnet_spectra_in.tflite" and run["input_kind"] == "logmel_patch"
        for name in ("invoke_ms", "frontend_ms", "framing_ms", "io_ms", "callback_ms", "e2e_ms"):
            st = run[name]
            assert st["n"] > 0 and 0 < st["min"] <= st["p50"] <= st["p90"] <= st["p99"] <= st["max"], (name, st)
        # end to end is the sum of the stages of each window, so it is never below the invoke inside it
        assert run["e2e_ms"]["min"] >= run["frontend_ms"]["min"]
        assert run["windows"] == run["e2e_ms"]["n"] and run["windows_per_s"] > 0
        assert run["rtf"] > 0 and run["cpu_ms_per_audio_s"] > 0
        assert run["realtime"]["windows"] >= 0 and run["realtime"]["cpu_percent"] is not None
        assert run["alloc"]["windows"] > 0 and run["alloc"]["bytes_per_window"] < 1024  # allocation-free path
        assert run["peak_rss_mb"] > 10
        assert run["backend"]["name"] and run["warmup"]["invokes"] > 0 and run["init_ms"] > 0
    env = doc["environment"]
    assert env["backend"]["name"] == runs[1]["backend"]["name"]
    assert env["board"] == bench_env.board_model()
    assert doc["settings"]["threads"] == [1, 2] and doc["settings"]["delegates"] == ["edgetpu", "cpu"]


def test_schema_catches_broken_results(coral_result, tmp_path):
    doc, _ = coral_result
    broken = copy.deepcopy(doc)
    del broken["runs"][1]["invoke_ms"]
    broken["runs"][2]["threads"] = "two"
    broken["schema_version"] = 99
    problems = bench_report.validate(broken)
    assert any("invoke_ms" in p for p in problems)
    assert any("runs[2].threads" in p for p in problems)
    assert any("schema_version" in p for p in problems)
    unavailable = copy.deepcopy(doc["runs"][0])
    unavailable.pop("reason", None)
    unavailable["status"] = "unavailable"
    assert any("reason" in p for p in bench_report.validate(unavailable, bench_report.SCHEMA["properties"]["runs"]["items"]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    assert_one_line_error(run_cli("bench", "--result", bad, "--compare", bad), 2, "not an edge-audio bench result")


def _scaled(doc: dict, factor: float) -> dict:
    out = copy.deepcopy(doc)
    for run in out["runs"]:
        if run["status"] == "ok":
            for name in ("invoke_ms", "e2e_ms", "frontend_ms"):
                if run.get(name):
                    run[name]["p50"] *= factor
    return out


def test_compare_exits_1_on_an_injected_regression(coral_result, tmp_path):
    doc, saved = coral_result
    same = run_cli("bench", "--result", saved, "--compare", saved)
    assert same.code == 0, same.out + same.err
    assert "no regression" in same.out
    faster_baseline = tmp_path / "baseline.json"
    faster_baseline.write_text(json.dumps(_scaled(doc, 1 / 3)))  # the same runs were 3x faster before
    r = run_cli("bench", "--result", saved, "--compare", faster_baseline, "--tolerance", "0.2")
    assert r.code == 1, r.out + r.err
    assert "REGRESSION" in r.out and "Traceback" not in r.err
    # within tolerance: 10 % slower with a 15 % tolerance is not a regression
    slightly = tmp_path / "slightly.json"
    slightly.write_text(json.dumps(_scaled(doc, 1 / 1.1)))
    assert run_cli("bench", "--result", saved, "--compare", slightly).code == 0


def test_check_exits_1_on_an_injected_regression(coral_result, tmp_path):
    doc, saved = coral_result
    profile = bench_report.profile_from_result(doc, "this-machine", 0.25)
    ok_path = tmp_path / "this-machine.json"
    ok_path.write_text(json.dumps(profile))
    r = run_cli("bench", "--result", saved, "--check", "--profile", ok_path)
    assert r.code == 0, r.out + r.err
    assert "no regression" in r.out and "this-machine" in r.out
    injected = copy.deepcopy(profile)
    for fig in injected["figures"]:
        fig["e2e_over_invoke_median"] /= 2  # the pipeline used to add half as much to the bare invoke
    bad_path = tmp_path / "injected.json"
    bad_path.write_text(json.dumps(injected))
    r = run_cli("bench", "--result", saved, "--check", "--profile", bad_path, "--json")
    assert r.code == 1, r.out + r.err
    result = json.loads(r.out)
    check = result["comparison"]["check"]
    assert check["regressions"] == 2  # cpu x1 and x2, end to end only
    assert {row["figure"] for row in check["rows"] if row["status"] == "regression"} == {"e2e_over_invoke.median"}
    assert bench_report.validate(result) == []


def test_a_busy_machine_is_not_a_regression_for_check(coral_result, tmp_path):
    """--check compares the ratios measured in one run: every time 3x slower (a busy machine) is no regression;
    --compare against the same machine's saved result still sees the times."""
    doc, saved = coral_result
    profile = bench_report.profile_from_result(doc, "this-machine", 0.25)
    (tmp_path / "this-machine.json").write_text(json.dumps(profile))
    busy = tmp_path / "busy.json"
    busy.write_text(json.dumps(_scaled(doc, 3.0)))  # every p50 3x: invoke, end to end and front end alike
    r = run_cli("bench", "--result", busy, "--check", "--profile", tmp_path / "this-machine.json")
    assert r.code == 0 and "no regression" in r.out, r.out + r.err
    assert "e2e_ms.p50" not in r.out and "e2e_over_invoke.median" in r.out
    assert run_cli("bench", "--result", busy, "--compare", saved).code == 1


def test_write_profile_round_trips(coral_result, tmp_path):
    doc, saved = coral_result
    path = tmp_path / "mine.json"
    r = run_cli("bench", "--result", saved, "--check", "--profile", ROOT / "edge/bench/profiles/x86-dev.json",
                "--write-profile", path)
    assert r.code in (0, 1), r.err  # x86-dev figures come from another machine; only the file matters here
    prof = bench_report.load_profile(path)
    assert {(f["model"], f["delegate"], f["threads"]) for f in prof["figures"]} == \
        {("yamnet_spectra_in.tflite", "cpu", 1), ("yamnet_spectra_in.tflite", "cpu", 2)}
    assert prof["measured"] is True


def test_board_profiles_in_the_repo_load_and_are_detected():
    names = bench_report.profile_names()
    assert {"x86-dev", "pi4-usb-coral", "pi5-usb-coral"} <= set(names)
    for name in names:
        prof = bench_report.find_profile(name, None)
        assert prof["figures"] and 0 < prof["tolerance"] < 10
        for f in prof["figures"]:
            assert f.get("e2e_over_invoke_median", 0) >= 1, f  # the checked figure: a ratio
    assert bench_report.find_profile(None, "Raspberry Pi 4 Model B Rev 1.5")["name"] == "pi4-usb-coral"
    assert bench_report.find_profile(None, "Raspberry Pi 5 Model B Rev 1.0")["name"] == "pi5-usb-coral"
    assert bench_report.find_profile(None, None, "x86_64")["name"] == "x86-dev"
    with pytest.raises(InputError, match="no bench reference profile matches"):
        bench_report.find_profile(None, "Some Other Board")
    with pytest.raises(InputError, match="available: "):
        bench_report.find_profile("no-such-board", None)


def test_check_without_matching_figures_is_bad_input(coral_result):
    _, saved = coral_result
    r = run_cli("bench", "--result", saved, "--check", "--profile", "pi4-usb-coral")
    if r.code == 2:
        assert_one_line_error(r, 2, "no figures for what was measured")
    else:  # pi4 has a yamnet_spectra_in.tflite cpu x1 figure: then it must be a real comparison
        assert "pi4-usb-coral" in r.out and "provisional" in r.out


def test_pipeline_calls_the_per_window_callback(coral_twin, class_map):
    """Where the detector plugs in: once per window, with the scores and the window's start sample."""
    classifier = Classifier.open(coral_twin, class_map, "cpu")
    rng = np.random.default_rng(1)
    audio = Audio(rng.integers(-3000, 3000, 16000 * 3).astype(np.int16), 16000, 1, "noise")
    seen = []
    pipe = Pipeline(classifier, audio, 7680, lambda scores, start, extra: seen.append(
        (scores.shape, float(scores.max()), start, extra)))
    pipe.run_windows(8, record=True)
    assert len(seen) == pipe.windows >= 8
    assert [s[2] for s in seen] == [i * 7680 for i in range(len(seen))]  # no onset windows without a lead
    assert all(shape == (521,) and 0 < top <= 1 and not extra for shape, top, _, extra in seen)
    assert len(pipe.callback_s) == len(pipe.total_s) == len(seen)


def test_the_detector_hook_brings_the_daemons_onset_windows(coral_twin, class_map):
    """With the detector's hook the pipeline runs what the daemon runs: the hop grid's windows and, where a sound
    begins, the onset window (off the grid)."""
    from edge.bench.hook import detector_hook
    classifier = Classifier.open(coral_twin, class_map, "cpu")
    rng = np.random.default_rng(1)
    quiet, loud = rng.integers(-30, 30, 35200), rng.integers(-8000, 8000, 16000)  # begins at 2.2 s: between two grid windows
    audio = Audio(np.concatenate([quiet, loud]).astype(np.int16), 16000, 1, "a sound after quiet")
    hook, lead = detector_hook(classifier.labels, classifier.params)
    seen = []

    def noted(scores, start, extra):
        seen.append((start, extra))
        hook(scores, start, extra)
    pipe = Pipeline(classifier, audio, 7680, noted, lead)
    pipe.run_windows(12)
    extra = [start for start, e in seen if e]
    assert lead == round(0.3 * 16000)
    assert extra and all(s % 7680 for s in extra)
    # the audio the pipeline went through is the grid's windows: onset windows are counted apart
    assert pipe.onset_windows == len(extra) and pipe.windows == len(seen) - len(extra) >= 12


def test_stats_are_the_usual_percentiles():
    st = stats_ms(list(range(1, 101)))
    assert st["n"] == 100 and st["min"] == 1 and st["max"] == 100 and st["mean"] == 50.5
    assert st["p50"] == pytest.approx(50.5) and st["p90"] == pytest.approx(90.1) and st["p99"] == pytest.approx(99.01)
    assert stats_ms([])["p50"] is None


def test_environment_from_a_board_like_sysfs(tmp_path):
    root = tmp_path
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text("Raspberry Pi 4 Model B Rev 1.4\x00")
    (root / "proc/cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 108.00\nModel\t: Raspberry Pi 4 Model B\n")
    for cpu in ("cpu0", "cpu1"):
        d = root / f"sys/devices/system/cpu/{cpu}/cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_governor").write_text("ondemand\n")
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("83450\n")
    (zone / "type").write_text("cpu-thermal\n")
    fw = root / "sys/devices/platform/soc/soc:firmware"
    fw.mkdir(parents=True)
    (fw / "get_throttled").write_text("50005\n")
    assert bench_env.board_model(str(root)) == "Raspberry Pi 4 Model B Rev 1.4"
    assert bench_env.cpu_model(str(root)) == "Raspberry Pi 4 Model B"
    assert bench_env.governors(str(root)) == {"cpu0": "ondemand", "cpu1": "ondemand"}
    assert bench_env.temperatures_c(str(root)) == {"cpu-thermal": 83.45}
    thr = bench_env.throttling(str(root))
    assert thr["raw"] == "0x50005"
    assert thr["flags"] == ["under-voltage", "throttled", "under-voltage occurred", "throttling occurred"]
    warns = bench_env.warnings({"governor": "ondemand", "throttling": thr, "temperature_c": {"cpu-thermal": 83.45},
                                "blas": {"name": "openblas", "thread_limit": "OPENBLAS_NUM_THREADS=1"}})
    assert len(warns) == 3
    assert "not 'performance'" in warns[0] and "under-voltage" in warns[1] and "83 C" in warns[2]


@pytest.mark.parametrize("args,needle", [
    (("--threads", "0"), "between 1 and 64"),
    (("--threads", "1,two"), "thread counts"),
    (("--seconds", "-1"), "duration"),
    (("--delegate", "gpu"), "bad delegate"),
    (("--tolerance", "0"), "fraction"),
    (("--model", "no/such/model.tflite"), "not found"),
    (("--compare", "no/such/result.json"), "not found"),
    (("--check", "--profile", "no-such-board"), "no bench reference profile"),
    (("--result", "x.json"), "only makes sense"),
    (("--audio", "no/such.wav"), "not found"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, waveform_model):
    model = () if "--model" in args else ("--model", waveform_model)
    assert_one_line_error(run_cli("bench", *model, *QUICK, *args), 2, needle)


def test_nothing_measurable_is_one_line_and_exit_2(waveform_model):
    r = run_cli("bench", "--model", waveform_model, "--delegate", "edgetpu", *QUICK)
    assert_one_line_error(r, 2, "nothing could be measured", "edgetpu")


def test_help_has_examples_and_schema_prints():
    r = run_cli("bench", "--help")
    assert r.code == 0 and "examples:" in r.out and "--check" in r.out and "--compare" in r.out
    s = run_cli("bench", "--schema")
    assert s.code == 0 and json.loads(s.out)["properties"]["schema_version"]["const"] == bench_report.SCHEMA_VERSION


def test_text_report_and_plot(waveform_model, tmp_path):
    png = tmp_path / "latency.png"
    r = run_cli("bench", "--model", waveform_model, "--delegate", "cpu", *QUICK, "--plot", png)
    assert r.code == 0, r.err
    assert "yamnet_classification.tflite on cpu x1" in r.out
    for label in ("invoke (bare)", "end to end", "windows/s", "CPU at real time", "peak RSS", "kept per window"):
        assert label in r.out, label
    assert "front end" not in r.out.split("on cpu x1")[1].split("windows/s")[0]  # a waveform model has none
    assert "[1/1]" in r.err  # progress
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot: matplotlib is not installed" in r.err and not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_with_nothing_in_common_is_bad_input(coral_result, tmp_path):
    doc, saved = coral_result
    other = copy.deepcopy(doc)
    for run in other["runs"]:
        run["threads"] = 8
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    assert_one_line_error(run_cli("bench", "--result", saved, "--compare", path), 2, "no run with the same model")


def test_the_detector_is_in_the_loop_unless_left_out(coral_result, coral_twin, class_map):
    doc, _ = coral_result
    assert doc["settings"]["detector"] is True
    r = run_cli("bench", "--model", coral_twin, "--labels", class_map, "--delegate", "cpu", *QUICK, "--json",
                "--no-detector")
    assert r.code == 0, r.err
    alone = json.loads(r.out)
    assert alone["settings"]["detector"] is False and alone["runs"][0]["callback_ms"] is None
