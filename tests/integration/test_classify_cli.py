"""`edge-audio classify` as users run it, on the real recordings and models."""

import json
import shutil

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli

CAT = {"Cat", "Meow", "Domestic animals, pets"}


def _classify(*args):
    r = run_cli("classify", "--json", *args)
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.out.splitlines()]
    summaries = {row["file"].rsplit("/", 1)[-1]: row for row in rows if row.get("summary")}
    windows = [row for row in rows if not row.get("summary")]
    return summaries, windows, r


def _labels(summary, k):
    return [t["label"] for t in summary["top"][:k]]


@pytest.fixture(scope="module")
def coral_results(assets):
    audio = assets / "audio"
    files = [audio / f for f in ("miaow_16k.wav", "speech_whistling2.wav", "baby_975ms.wav", "jingle_975ms.wav")]
    return _classify(*files, "--model", assets / "models" / "coral" / "yamnet_spectra_in_edgetpu.tflite")


@pytest.fixture(scope="module")
def waveform_results(assets):
    audio = assets / "audio"
    files = [audio / f for f in ("miaow_16k.wav", "speech_whistling2.wav", "baby_975ms.wav", "jingle_975ms.wav")]
    return _classify(*files, "--model", assets / "models" / "yamnet_classification.tflite")


@pytest.mark.parametrize("which", ["coral_results", "waveform_results"])
def test_expected_classes_on_the_shared_recordings(request, which):
    summaries, windows, _ = request.getfixturevalue(which)
    assert CAT & set(_labels(summaries["miaow_16k.wav"], 5))
    assert {"Whistle", "Whistling"} & set(_labels(summaries["speech_whistling2.wav"], 3))
    assert {"Baby cry, infant cry", "Crying, sobbing"} & set(_labels(summaries["baby_975ms.wav"], 3))  # 44.1 kHz
    assert {"Music", "Percussion", "Jingle bell"} & set(_labels(summaries["jingle_975ms.wav"], 5))  # 48 kHz
    assert summaries["miaow_16k.wav"]["windows"] == 13 and summaries["baby_975ms.wav"]["windows"] == 1
    first = windows[0]
    assert set(first) == {"file", "t_start", "t_end", "top"} and first["t_end"] - first["t_start"] == 0.975
    assert set(first["top"][0]) == {"index", "label", "score"}


def test_edgetpu_model_runs_on_its_cpu_twin_and_says_why(coral_results):
    _, _, r = coral_results
    line = [l for l in r.err_lines if "yamnet_spectra_in.tflite" in l]
    assert line and "on cpu" in line[0] and "libedgetpu.so.1 not found" in line[0] and "CPU twin" in line[0]


def test_coral_self_test_audio_hears_speech(assets, tmp_path):
    from edge.core.wavfile import write_wav
    pcm = np.fromfile(assets / "models" / "coral" / "yamnet_test_audio.bin", "<i2")
    write_wav(tmp_path / "selftest.wav", pcm, 16000)
    summaries, _, _ = _classify(tmp_path / "selftest.wav", "--model",
                                assets / "models" / "coral" / "yamnet_spectra_in.tflite")
    assert _labels(summaries["selftest.wav"], 1) == ["Speech"]


def test_human_table(assets):
    r = run_cli("classify", assets / "audio" / "dog_975ms.wav", "--model",
                assets / "models" / "coral" / "yamnet_spectra_in.tflite", "--top-k", "3")
    assert r.code == 0 and "Dog" in r.out and "summary" in r.out


def test_explicit_edgetpu_without_a_tpu_exits_2(assets):
    r = run_cli("classify", assets / "audio" / "dog_975ms.wav", "--delegate", "edgetpu",
                "--model", assets / "models" / "coral" / "yamnet_spectra_in_edgetpu.tflite")
    assert_one_line_error(r, 2, "libedgetpu.so.1 not found", "install a matched runtime pair", "doctor")


def test_edgetpu_only_model_without_twin_exits_2(assets):
    r = run_cli("classify", assets / "audio" / "dog_975ms.wav",
                "--model", assets / "models" / "coral" / "voice_commands_v0.8_edgetpu.tflite")
    assert_one_line_error(r, 2, "no CPU twin", "voice_commands_v0.8_edgetpu.tflite")


def _model_copy(assets, tmp_path, name, cut=None):
    src = assets / "models" / "coral" / "yamnet_spectra_in.tflite"
    data = src.read_bytes()
    (tmp_path / name).write_bytes(data if cut is None else data[:cut])
    shutil.copy(assets / "models" / "yamnet_class_map.csv", tmp_path / "yamnet_class_map.csv")
    return tmp_path / name


@pytest.mark.parametrize("case,needle", [("truncated", "truncated or corrupt"), ("empty", "empty"),
                                         ("text", "not a TensorFlow Lite model"), ("image", "unsupported input shape"),
                                         ("nolabels", "label file not found"), ("missing", "not found")])
def test_bad_models_exit_2_with_one_line(assets, tmp_path, case, needle):
    labels = []
    if case == "truncated":
        model = _model_copy(assets, tmp_path, "m.tflite", cut=1_000_000)
    elif case == "empty":
        model = _model_copy(assets, tmp_path, "m.tflite", cut=0)
    elif case == "text":
        model = tmp_path / "m.tflite"
        model.write_text("not a model\n")
    elif case == "image":
        model = assets / "models" / "coral" / "mobilenet_v1_0.25_128_quant.tflite"
        labels = ["--labels", assets / "models" / "coral" / "imagenet_labels.txt"]
    elif case == "nolabels":
        model = assets / "models" / "coral" / "yamnet_spectra_in.tflite"
        labels = ["--labels", tmp_path / "missing.csv"]
    else:
        model = tmp_path / "missing.tflite"
    r = run_cli("classify", assets / "audio" / "dog_975ms.wav", "--model", model, *labels)
    assert_one_line_error(r, 2, needle)


def test_bad_wavs_exit_2_and_good_files_are_still_classified(assets, tmp_path):
    (tmp_path / "notriff.wav").write_bytes(b"OggS not a wav")
    r = run_cli("classify", "--json", tmp_path / "notriff.wav", assets / "audio" / "dog_975ms.wav",
                "--model", assets / "models" / "coral" / "yamnet_spectra_in.tflite")
    assert_one_line_error(r, 2, "not a WAV file")
    assert any(json.loads(l).get("summary") for l in r.out.splitlines())  # the good file was not lost


def test_bad_arguments_are_one_line(assets):
    r = run_cli("classify", assets / "audio" / "dog_975ms.wav", "--delegate", "gpu")
    assert_one_line_error(r, 2, "bad delegate")
    r = run_cli("classify", assets / "audio" / "dog_975ms.wav", "--hop", "abc")
    assert_one_line_error(r, 2, "--hop")


def test_summary_pools_by_mean_or_max_and_says_which(assets):
    model = assets / "models" / "coral" / "yamnet_spectra_in.tflite"
    wav = assets / "audio" / "miaow_16k.wav"
    mean, windows, _ = _classify(wav, "--model", model, "--top-k", "521")
    peak, _, _ = _classify(wav, "--model", model, "--top-k", "521", "--pool", "max")
    mean, peak = mean["miaow_16k.wav"], peak["miaow_16k.wav"]
    assert mean["pool"] == "mean" and peak["pool"] == "max"
    cat_per_window = [next(t["score"] for t in w["top"] if t["label"] == "Cat") for w in windows]
    cat = {s["pool"]: next(t["score"] for t in s["top"] if t["label"] == "Cat") for s in (mean, peak)}
    assert cat["max"] == pytest.approx(max(cat_per_window), abs=1e-6)
    assert cat["mean"] == pytest.approx(np.mean(cat_per_window), abs=1e-5) and cat["mean"] < cat["max"]
    r = run_cli("classify", wav, "--model", model, "--pool", "max")
    assert r.code == 0 and "max summary" in r.out and "(max of 13 windows)" in r.out
    assert_one_line_error(run_cli("classify", wav, "--model", model, "--pool", "median"), 2, "--pool")
