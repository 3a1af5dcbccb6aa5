"""Reading .tflite structure without an interpreter: Edge TPU detection and corrupt-file errors."""

import pytest

from edge.core.errors import ModelError
from edge.model.tflite_file import EDGETPU_CUSTOM_OP, read_model_info


def test_reads_coral_pair_and_detects_the_edgetpu_op(assets):
    coral = assets / "models" / "coral"
    cpu = read_model_info(coral / "yamnet_spectra_in.tflite")
    tpu = read_model_info(coral / "yamnet_spectra_in_edgetpu.tflite")
    assert not cpu.is_edgetpu and tpu.is_edgetpu
    assert cpu.inputs[0].shape == [1, 96, 64] and cpu.outputs[0].shape == [1, 521]
    hist = cpu.op_histogram()
    assert hist["CONV_2D"] == 14 and hist["DEPTHWISE_CONV_2D"] == 13
    assert tpu.op_histogram() == {"QUANTIZE": 1, EDGETPU_CUSTOM_OP: 1, "DEQUANTIZE": 1}
    assert 3_500_000 < cpu.parameter_bytes < 4_000_000


def test_reads_waveform_model_and_quantized_io(assets):
    wave = read_model_info(assets / "models" / "yamnet_classification.tflite")
    assert wave.inputs[0].shape == [15600] and wave.inputs[0].dtype == "float32"
    assert {"RFFT2D", "COMPLEX_ABS", "LOG"} <= set(wave.op_histogram())
    mobilenet = read_model_info(assets / "models" / "coral" / "mobilenet_v1_0.25_128_quant.tflite")
    assert mobilenet.inputs[0].dtype == "uint8" and mobilenet.inputs[0].quantized
    assert mobilenet.inputs[0].scale == [0.0078125] and mobilenet.inputs[0].zero_point == [128]


@pytest.mark.parametrize("cut,message", [(0, "empty"), (6, "not a TensorFlow Lite model"),
                                         (200, "truncated"), (0.5, "truncated"), (0.999, "truncated")])
def test_damaged_files_are_one_line_errors(assets, tmp_path, cut, message):
    data = (assets / "models" / "coral" / "yamnet_spectra_in.tflite").read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(data[:n])
    with pytest.raises(ModelError, match=message):
        read_model_info(bad)


def test_not_a_model_at_all(tmp_path):
    f = tmp_path / "notes.tflite"
    f.write_text("this is text, not a flatbuffer")
    with pytest.raises(ModelError, match="not a TensorFlow Lite model"):
        read_model_info(f)
    with pytest.raises(ModelError, match="not found"):
        read_model_info(tmp_path / "missing.tflite")
