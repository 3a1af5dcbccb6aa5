"""`train-head` on five real devset classes (8 recordings each) with the sample recordings as background, on the
session's own build; the exported bundle then goes through classify, compile, and the daemon with a real broker."""

from __future__ import annotations

import json
import struct
import time
import zlib

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from edge.model.bundle import load_bundle

pytestmark = [pytest.mark.assets, pytest.mark.tensorflow]

CLASSES = ["chirping_birds", "clock_alarm", "coughing", "hen", "pig"]


@pytest.fixture(scope="module")
def sounds(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("sounds")
    for c in CLASSES:
        (root / c).mkdir()
        for f in sorted((assets / "devset/clips").glob(f"esc50_{c}_*.wav")):
            (root / c / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="module")
def trained(own_build, sounds, assets, tmp_path_factory):
    work = tmp_path_factory.mktemp("trained")
    r = run_cli("train-head", "--data", sounds, "--background", assets / "audio", "--base", own_build[0],
                "--out", work / "my-sounds", "--cache", work / "cache", "--audioset", "--val-fraction", "0.375",
                "--json", module="tools")
    assert r.code == 0, r.err
    return work / "my-sounds", json.loads(r.out), r, work


def test_int8_export_keeps_the_float_heads_clip_accuracy_on_held_out_files(trained):
    _, report, r, _ = trained
    for pool in ("mean", "max"):
        float_head, int8 = report["float_head"]["clip"][pool], report["int8_export"]["clip"][pool]
        print(f"\nheld-out clip accuracy ({pool}): float head {float_head['accuracy']}, int8 {int8['accuracy']}")
        assert abs(int8["accuracy"] - float_head["accuracy"]) <= 0.03
    assert report["pool_chosen"] == "measured" and report["pool"] in ("mean", "max")
    assert report["int8_export"]["clip"][report["pool"]]["accuracy"] >= 0.7  # measured 0.824 (17 files)
    assert report["int8_export"]["window_accuracy"] >= 0.6
    assert len(report["held_out"]) == 17  # 3 of each class's 8 recordings, 2 of the 6 background ones
    # split by file: every class has held-out recordings, and none of them was trained on
    train, held = {t["file"] for t in report["train"]}, {h["file"] for h in report["held_out"]}
    assert not train & held and {h["class"] for h in report["held_out"]} == set(CLASSES) | {"background"}
    assert report["classes"] == CLASSES + ["background"]
    assert len(report["int8_export"]["clip"]["max"]["per_class"]) == 6
    assert "training windows" in r.err and "training: epoch 40/40" in r.err  # progress on the long steps


def test_a_second_run_reuses_the_embeddings_and_prints_both_figures(trained, sounds, assets, own_build):
    _, report, _, work = trained
    r = run_cli("train-head", "--data", sounds, "--background", assets / "audio", "--base", own_build[0],
                "--out", work / "again", "--cache", work / "cache", "--audioset", "--val-fraction", "0.375",
                module="tools")
    assert r.code == 0, r.err
    assert "embeddings computed 0, reused from the cache" in r.err
    lines = {line.split()[0] + " " + line.split()[1]: line.split() for line in r.out.splitlines()
             if line.startswith(("float head", "int8 export "))}
    pool, other = report["pool"], "mean" if report["pool"] == "max" else "max"
    for name, key in (("float head", "float_head"), ("int8 export", "int8_export")):
        assert float(lines[name][2]) == pytest.approx(report[key]["clip"][pool]["accuracy"], abs=1e-3)
        assert float(lines[name][3]) == pytest.approx(report[key]["clip"][other]["accuracy"], abs=1e-3)
    assert "confusion matrix" in r.out and "precision" in r.out and "start thresholds" in r.out


def test_bundle_carries_labels_thresholds_and_a_self_test_clip(trained):
    out, report, _, _ = trained
    b = load_bundle(out)
    assert b.labels.read_text().split() == CLASSES + ["background"]
    assert set(b.thresholds) == set(CLASSES) and all(0.25 <= v <= 1.0 for v in b.thresholds.values())
    assert b.thresholds == {k: v["threshold"] for k, v in report["thresholds"].items()}
    assert b.selftest is not None and b.selftest.expected in CLASSES and b.selftest.clip.is_file()
    assert set(b.manifest["selftest"]) == {"clip", "expected"}
    r = run_cli("classify", b.selftest.clip, "--model", out, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out.splitlines()[-1])["top"][0]["label"] == b.selftest.expected


def test_classify_reports_the_new_labels(trained):
    out, report, _, _ = trained
    hen = next(h["file"] for h in report["held_out"] if h["class"] == "hen")
    r = run_cli("classify", hen, "--model", out, "--json", "--top-k", "2")
    assert r.code == 0, r.err
    summary = json.loads(r.out.splitlines()[-1])
    assert summary["top"][0]["label"] == "hen" and summary["pool"] == report["pool"]  # the bundle's choice
    assert load_bundle(out).clip_pool == report["pool"]
    assert "sounds_int8.tflite (logmel_patch) on cpu" in r.err


def test_one_edge_tpu_subgraph_and_compile_takes_it_unchanged(trained, tmp_path):
    out, _, _, _ = trained
    r = run_cli("check", out, "--json", module="tools")
    d = json.loads(r.out)
    assert d["single_tpu_subgraph"] and d["predicted_cpu_ops"] == [] and d["fits_on_chip"]
    assert d["io_ops_on_cpu"] == ["QUANTIZE", "DEQUANTIZE", "DEQUANTIZE"]  # float in, two float outputs
    r = run_cli("compile", out, "--out", tmp_path / "compiled", env={"PATH": str(tmp_path)}, module="tools")
    assert r.code == 0, r.err
    b = load_bundle(tmp_path / "compiled")  # every file copied and its hash checked
    assert b.selftest.clip.is_file() and (tmp_path / "compiled/yamnet_class_map.csv").is_file()
    assert b.thresholds == load_bundle(out).thresholds


def test_two_output_bundle_audioset_scores_agree_with_the_backbone(trained, own_build, assets):
    from tools.audio_windows import file_windows, patches_of
    from tools.heads.export import run_outputs
    out, report, _, _ = trained
    assert report["audioset_vs_base"]["top1_agreement"] >= 0.98
    patches = patches_of(file_windows(assets / "audio/miaow_16k.wav"))
    classes, audioset = run_outputs(out / "sounds_int8.tflite", patches)
    alone = run_outputs(own_build[0] / "yamnet_int8.tflite", patches)[0]
    assert classes.shape == (13, 6) and audioset.shape == (13, 521)
    assert np.allclose(classes.sum(axis=1), 1.0, atol=0.02)  # softmax over the new classes
    assert (audioset.argmax(axis=1) == alone.argmax(axis=1)).mean() >= 0.9
    assert np.abs(audioset - alone).max() < 0.05


def _png_pixels(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    assert (depth, color) == (8, 2)
    idat, pos = b"", 8
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + size]
        pos += 12 + size
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + 3 * width)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(height, width, 3)


def test_confusion_matrix_png_is_written(trained):
    out, report, _, _ = trained
    img = _png_pixels(out / "confusion.png")
    assert img.shape[0] > 300 and img.shape[1] > 300
    full_rows = sum(1 for row in report["int8_export"]["clip"][report["pool"]]["confusion"]
                    if max(row) == sum(row) and sum(row))
    dark_blue = np.all(img == (31, 87, 160), axis=2).sum()  # cells holding a whole row's clips
    assert full_rows >= 4 and dark_blue > 1000
    assert (img.reshape(-1, 3) == (30, 30, 30)).all(axis=1).sum() > 500  # the labels' ink


def test_daemon_reports_the_new_labels_and_home_assistant_announces_them(trained, broker, tmp_path):
    from edge.core.wavfile import write_wav
    from tools.heads.embeddings import mono_16k
    from tools.rig.daemon import DaemonProcess, write_daemon_config
    from tools.rig.mqtt import Subscriber
    from tools.rig.ports import have
    if not have("mosquitto"):
        pytest.skip("needs Debian's mosquitto (make test installs it)")
    out, report, _, _ = trained
    hen = next(h["file"] for h in report["held_out"] if h["class"] == "hen")
    from pathlib import Path
    write_wav(tmp_path / "hen.wav", np.concatenate([mono_16k(Path(hen)), np.zeros(16000 * 3, np.int16)]), 16000)
    b = broker()
    sub = Subscriber(b.port)
    config = write_daemon_config(tmp_path / "daemon.toml", device={"id": "barn"},
                                 audio={"source": "wav", "file": tmp_path / "hen.wav", "realtime": False},
                                 model={"path": out}, mqtt={"host": "127.0.0.1", "port": b.port})
    daemon = DaemonProcess(config)
    try:
        assert daemon.proc.wait(60) == 0, daemon.log
    finally:
        daemon.kill()
    assert sub.wait(lambda s: any(e["type"] == "end" for e in s.events()), 10), daemon.log
    events = sub.events()
    assert {e["label"] for e in events} == {"hen"} and {e["model"] for e in events} == {"my-sounds"}
    time.sleep(0.2)
    late = Subscriber(b.port)
    assert late.wait(lambda s: s.payloads("homeassistant/sensor/barn/top/config"), 5)
    retained = late.retained()
    late.close()
    sub.close()
    announced = {t.split("/")[3] for t in retained if t.startswith("homeassistant/binary_sensor/barn/")}
    assert announced == set(CLASSES)  # the bundle's labels; "background" has no threshold and is not watched
    config = json.loads(retained["homeassistant/binary_sensor/barn/hen/config"])
    assert config["name"] == "hen" and config["state_topic"] == "edge-audio/barn/state/hen"
    assert retained["edge-audio/barn/state/hen"] == b"OFF"


@pytest.mark.parametrize("case,needle", [("missing", "no such folder"), ("empty", "class folder holds no .wav"),
                                         ("one", "one class"), ("unreadable", "2 unreadable WAV files"),
                                         ("loose", "one folder per class"),
                                         ("same id", "class folders 'Cat' and 'cat' would share the id 'cat'")])
def test_bad_input_is_one_line_and_exit_2(tmp_path, assets, case, needle):
    data = tmp_path / "data"
    for c in ("dog", "cat"):
        (data / c).mkdir(parents=True)
        (data / c / "a.wav").symlink_to(assets / f"audio/{'dog_975ms' if c == 'dog' else 'miaow_16k'}.wav")
    if case == "missing":
        data = tmp_path / "nothing"
    elif case == "empty":
        (data / "bird").mkdir()
    elif case == "one":
        (data / "cat/a.wav").unlink()
        (data / "cat").rmdir()
    elif case == "unreadable":
        (data / "dog/broken.wav").write_bytes(b"RIFF....WAVEjunk")
        (data / "cat/notes.wav").write_text("not audio")
    elif case == "same id":
        (data / "Cat").mkdir()
        (data / "Cat" / "b.wav").symlink_to(assets / "audio/miaow_16k.wav")
    else:
        (data / "b.wav").symlink_to(assets / "audio/dog_975ms.wav")
    r = run_cli("train-head", "--data", data, "--out", tmp_path / "o", module="tools")
    line = assert_one_line_error(r, 2, needle)
    if case == "unreadable":
        assert "broken.wav" in line and "notes.wav" in line
