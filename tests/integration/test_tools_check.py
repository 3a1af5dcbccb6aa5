"""`check` and `inspect` on real models: the static Edge TPU report and the model summary."""

from __future__ import annotations

import json
import warnings

import numpy as np

import pytest

from conftest import assert_one_line_error, run_cli
from tools.model.check import check_model, format_report

pytestmark = pytest.mark.assets


def test_coral_twin_is_one_tpu_subgraph_with_io_conversions_apart(coral_twin):
    r = check_model(coral_twin)
    assert r.single_tpu_subgraph
    assert r.predicted_cpu_ops == []
    assert r.io_ops == ["QUANTIZE", "DEQUANTIZE"]
    assert r.predicted_tpu_ops.count("CONV_2D") == 14 and r.predicted_tpu_ops.count("DEPTHWISE_CONV_2D") == 13
    assert {"MEAN", "FULLY_CONNECTED", "LOGISTIC"} <= set(r.predicted_tpu_ops)
    assert 3_500_000 < r.parameter_bytes < 8 * 1024 * 1024
    assert r.to_dict()["fits_on_chip"]


def test_uint8_mobilenet_maps_completely(assets):
    r = check_model(assets / "models" / "coral" / "mobilenet_v1_0.25_128_quant.tflite")
    assert r.single_tpu_subgraph and r.io_ops == [] and len(r.predicted_tpu_ops) == 31


def test_waveform_model_front_end_is_cpu_bound(waveform_model):
    r = check_model(waveform_model)
    assert r.predicted_tpu_ops == []
    for op in ("RFFT2D", "COMPLEX_ABS", "LOG", "MUL", "CONV_2D"):
        assert op in r.predicted_cpu_ops
    reasons = {o.op: o.reason for o in r.ops}
    assert "unsupported op RFFT2D" in reasons["RFFT2D"]
    assert "float32 is not int8/uint8" in r.first_unmappable.reason
    assert "nothing maps" in format_report(r)


def test_check_cli_json(coral_twin):
    r = run_cli("check", coral_twin, "--json", module="tools")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["predicted_cpu_ops"] == [] and len(d["predicted_tpu_ops"]) == 32
    assert d["io_ops_on_cpu"] == ["QUANTIZE", "DEQUANTIZE"]
    assert d["parameter_bytes"] > 3_500_000


def test_check_reads_a_bundle(assets, tmp_path):
    assert run_cli("fetch", "bundle", "--dest", tmp_path / "b", "--mirror", assets, module="tools").code == 0
    r = run_cli("check", tmp_path / "b", module="tools")
    assert r.code == 0 and "one Edge TPU subgraph" in r.out, r.err


def test_already_compiled_model_is_said_so(assets):
    r = check_model(assets / "models" / "coral" / "yamnet_spectra_in_edgetpu.tflite")
    assert r.already_compiled and r.predicted_tpu_ops == ["edgetpu-custom-op"]


@pytest.mark.parametrize("command", ["check", "inspect"])
def test_bad_model_is_one_line(command, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x18\x00\x00\x00TFL3" + b"\x00" * 10)
    assert_one_line_error(run_cli(command, bad, module="tools"), 2, "truncated or corrupt")
    assert_one_line_error(run_cli(command, tmp_path / "missing.tflite", module="tools"), 2, "not found")
    assert_one_line_error(run_cli(command, tmp_path, module="tools"), 2, "manifest")


def test_inspect_edgetpu_model(assets):
    r = run_cli("inspect", assets / "models" / "coral" / "yamnet_spectra_in_edgetpu.tflite", module="tools")
    assert r.code == 0, r.err
    assert "Edge TPU model: 1 edgetpu-custom-op" in r.out
    assert "float32 [1, 96, 64]" in r.out and "float32 [1, 521]" in r.out


def test_inspect_json_quantization(assets):
    r = run_cli("inspect", assets / "models" / "coral" / "mobilenet_v1_0.25_128_quant.tflite", "--json",
                module="tools")
    d = json.loads(r.out)
    assert d["inputs"][0]["dtype"] == "uint8" and d["inputs"][0]["shape"] == [1, 128, 128, 3]
    assert d["inputs"][0]["quantization"]["per_channel"] is False
    assert d["op_histogram"]["CONV_2D"] == 15 and d["edgetpu"] is False


@pytest.mark.parametrize("command", ["build", "check", "compile", "evaluate", "inspect"])
def test_every_command_has_help_with_an_example(command):
    r = run_cli(command, "--help", module="tools")
    assert r.code == 0 and "examples:" in r.out and "python -m tools " + command in r.out


def _int8_model(tf, layers_fn, input_shape, batch_size):
    inp = tf.keras.layers.Input(shape=input_shape, batch_size=batch_size)
    model = tf.keras.Model(inp, layers_fn(inp))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.normal(size=(1, *input_shape)).astype(np.float32)]
                                                for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


@pytest.fixture(scope="module")
def small_models(tensorflow, tmp_path_factory):
    tf = tensorflow
    folder = tmp_path_factory.mktemp("small")
    L = tf.keras.layers
    partial = _int8_model(tf, lambda x: L.Dense(4)(L.LeakyReLU(0.1)(L.Dense(8)(x))), (16,), 1)
    dynamic = _int8_model(tf, lambda x: L.Dense(4)(x), (16,), None)
    dilated = _int8_model(tf, lambda x: L.DepthwiseConv2D(3, dilation_rate=2, padding="same")(x), (8, 8, 4), 1)
    channel_mean = _int8_model(tf, lambda x: L.Lambda(lambda t: tf.reduce_mean(t, axis=-1))(L.Conv2D(8, 1)(x)), (4, 4, 3), 1)
    for name, data in [("partial", partial), ("dynamic", dynamic), ("dilated", dilated),
                       ("channel_mean", channel_mean)]:
        (folder / f"{name}.tflite").write_bytes(data)
    return folder


@pytest.mark.tensorflow
def test_everything_after_the_first_unmappable_op_runs_on_the_cpu(small_models):
    r = check_model(small_models / "partial.tflite")
    assert r.predicted_tpu_ops == ["FULLY_CONNECTED"]
    assert r.predicted_cpu_ops == ["LEAKY_RELU", "FULLY_CONNECTED"]
    assert r.first_unmappable.reason == "unsupported op LEAKY_RELU"
    assert "1 ops on the Edge TPU, then 2 on the CPU" in format_report(r)


@pytest.mark.tensorflow
def test_dynamic_batch_is_reported(small_models):
    r = check_model(small_models / "dynamic.tflite")
    assert r.predicted_tpu_ops == [] and r.first_unmappable.reason.startswith("dynamic shape")


@pytest.mark.tensorflow
@pytest.mark.parametrize("name, op, needle", [("dilated", "DEPTHWISE_CONV_2D", "dilated DEPTHWISE_CONV_2D"),
                                              ("channel_mean", "MEAN", "batch or channel axis")])
def test_unsupported_parameters_are_named(small_models, name, op, needle):
    r = check_model(small_models / f"{name}.tflite")
    bad = r.first_unmappable
    assert bad is not None and bad.op == op, format_report(r)
    assert bad.reason.startswith("unsupported parameters") and needle in bad.reason
