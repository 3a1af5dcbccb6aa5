"""`build` from each published form of YAMNet: Coral's int8 twin (the default source), and the Keras checkpoint
yamnet.h5. The real yamnet.h5 is not in the asset mirror and cannot be downloaded here, so its reader is tested
on a checkpoint written in the published layout (one HDF5 group per Keras layer, batch norm unfolded) from the
weights of the published waveform model, and its fetch entry as far as the sha256 pin."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from edge.model.bundle import load_bundle

pytestmark = [pytest.mark.assets, pytest.mark.tensorflow]


@pytest.fixture(scope="module")
def devset_evaluation(own_build, assets, coral_twin, waveform_model):
    """The default build and Coral's twin on the whole devset (clip score: mean of the windows)."""
    out, _ = own_build
    r = run_cli("evaluate", "--model", out, "--model", coral_twin, "--reference", waveform_model,
                assets / "devset/clips", "--labels-csv", assets / "devset/labels.csv", "--json", module="tools")
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_default_build_reads_corals_twin_and_keeps_its_clips(own_build):
    out, r = own_build
    assert "fetching yamnet_spectra_in.tflite (sha256-pinned)" in r.err
    m = load_bundle(out).manifest
    assert m["source"]["kind"] == "patch_int8_tflite" and m["source"]["model"] == "yamnet_spectra_in.tflite"
    assert m["source"]["published"].endswith("coralmicro/raw/main/models/yamnet_spectra_in.tflite")
    q = m["quantization"]
    assert q["activation_bounds_per"] == "channel" and q["activation_bound_percentile"] == 99.99
    assert max(q["activation_bounds"]) <= 6.0  # never above where the source itself clips
    faith = m["faithfulness"]["float_rebuild_vs_source_on_calibration_windows"]
    assert faith["top1_agreement"] >= 0.85 and faith["ref_top1_in_top5"] >= 0.98  # measured 0.906 / 1.000
    assert m["check"]["predicted_cpu_ops"] == 0


def test_default_build_reaches_corals_twin_on_the_devset(devset_evaluation):
    ours, coral = (m["clip_hit_rates"] for m in devset_evaluation["models"])
    assert devset_evaluation["files"] == 160
    # measured 0.744 / 0.850 / 0.425 against the twin's 0.750 / 0.850 / 0.419. Which side of a tie the strict top-5
    # lands on moves by one clip with 5e-7 changes in the calibration patches (float32 vs float64 after the FFT):
    # "reaches" means within one clip of 160
    one_clip = 1.0 / devset_evaluation["files"]
    for key in ("strict_top5", "lenient_top5", "strict_top1"):
        assert ours[key] >= coral[key] - one_clip - 1e-9, (key, ours, coral)
    assert ours["strict_top5"] > devset_evaluation["reference_clip_hit_rates"]["strict_top5"]  # the waveform model


def _write_checkpoint(path, weights, seed=0):
    """yamnet.h5's layout: group <layer> holding <layer>/<weight>:0, batch norm (beta, moving mean and variance,
    epsilon 1e-4, no gamma) after each bias-free convolution, `logits` last."""
    import h5py
    from tools.model.yamnet_keras import BATCHNORM_EPSILON, checkpoint_layers
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        def put(layer, leaf, value):
            f.require_group(layer).create_dataset(f"{layer}/{leaf}:0", data=value)
        for (name, kernel_name, kind, stride), layer in zip(checkpoint_layers(), weights.layers):
            assert (layer.kind, layer.stride) == (kind, stride)
            n = layer.out_channels
            mean, var = rng.normal(0, 1, n).astype(np.float32), rng.uniform(0.5, 2, n).astype(np.float32)
            inv = 1 / np.sqrt(var + BATCHNORM_EPSILON)
            put(name, kernel_name, layer.kernel / (inv[None, None, :, None] if kind == "depthwise"
                                                   else inv[None, None, None, :]))
            put(f"{name}/bn", "beta", layer.bias + mean * inv)
            put(f"{name}/bn", "moving_mean", mean)
            put(f"{name}/bn", "moving_variance", var)
        put("logits", "kernel", weights.dense_kernel)
        put("logits", "bias", weights.dense_bias)


@pytest.fixture(scope="module")
def checkpoint(assets, tmp_path_factory):
    from tools.model.yamnet_weights import read_yamnet_layers
    weights = read_yamnet_layers(assets / "models/yamnet_classification.tflite")
    path = tmp_path_factory.mktemp("keras") / "yamnet.h5"
    _write_checkpoint(path, weights)
    return path, weights


def test_checkpoint_reader_folds_batch_norm_back_to_the_same_network(checkpoint):
    from tools.model.yamnet_weights import read_yamnet_layers, source_kind
    path, weights = checkpoint
    read = read_yamnet_layers(path)
    assert source_kind(path) == "keras_h5" and read.kind == "keras_h5" and read.caps == []
    for a, b in zip(read.layers, weights.layers):
        assert a.kind == b.kind and a.stride == b.stride
        np.testing.assert_allclose(a.kernel, b.kernel, atol=1e-5)
        np.testing.assert_allclose(a.bias, b.bias, atol=1e-5)
    np.testing.assert_array_equal(read.dense_kernel, weights.dense_kernel)


def test_build_from_a_checkpoint(checkpoint, assets, class_map, tmp_path):
    path, _ = checkpoint
    out = tmp_path / "from-h5"
    r = run_cli("build", "--source", path, "--labels", class_map, "--out", out, "--calibration", assets / "audio",
                module="tools")
    assert r.code == 0, r.err
    assert "no source model to compare" in r.err
    m = load_bundle(out).manifest
    assert m["source"]["kind"] == "keras_h5" and m["source"]["published"] is None  # not the pinned file
    assert "not_measured" in m["faithfulness"] and m["check"]["predicted_cpu_ops"] == 0
    r = run_cli("classify", assets / "audio/miaow_16k.wav", "--model", out, "--json", "--top-k", "3")
    assert r.code == 0 and "Cat" in r.out.splitlines()[-1], r.err


def test_checkpoint_fetch_is_pinned(checkpoint, tmp_path):
    from edge.model import assets
    assert assets.YAMNET_KERAS.url == "https://storage.googleapis.com/audioset/yamnet.h5"
    assert assets.YAMNET_KERAS.sha256 == "13c3308955bbfaef262f175ac9c40e47b134573a93984f009220dd7cc12a1744"
    r = run_cli("fetch", "keras", "--mirror", tmp_path, "--dest", tmp_path / "got", module="tools")
    assert_one_line_error(r, 2, "not in the offline mirror")
    (tmp_path / "models").mkdir()
    (tmp_path / "models/yamnet.h5").write_bytes(checkpoint[0].read_bytes())  # a checkpoint, not the pinned one
    r = run_cli("fetch", "keras", "--mirror", tmp_path, "--dest", tmp_path / "got", module="tools")
    assert_one_line_error(r, 2, "refusing to install")
    assert not (tmp_path / "got/yamnet.h5").exists()
