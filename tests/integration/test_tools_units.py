"""Small pieces of the host tools: score comparison, int8 ranges, the in-place quantization edit."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.tflite_file import read_model_info
from tools.eval.compare import compare_scores
from edge.model.tflite_edit import set_tensor_quantization
from tools.model.tflite_patch import range_to_int8


def test_compare_scores():
    ref = np.array([[0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.2], [0.1, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    same = compare_scores(ref, ref)
    assert same["top1_agreement"] == 1.0 and same["ref_top1_in_top5"] == 1.0 and same["max_abs_diff"] == 0.0
    other = ref.copy()
    other[0, 6] = 0.95  # a different top class, but the reference's is still second
    c = compare_scores(ref, other)
    assert c["top1_agreement"] == 0.5 and c["ref_top1_in_top5"] == 1.0
    assert c["max_abs_diff"] == pytest.approx(0.75) and c["windows"] == 2
    with pytest.raises(ValueError):
        compare_scores(ref, ref[:1])


def test_range_to_int8_maps_the_ends():
    scale, zero = range_to_int8(-8.0, 9.5)
    assert (-128 - zero) * scale == pytest.approx(-8.0, abs=scale)
    assert (127 - zero) * scale == pytest.approx(9.5, abs=scale)
    assert range_to_int8(1.0, 2.0)[1] == -128  # a range not containing 0 is widened to include it


@pytest.mark.assets
def test_set_tensor_quantization_edits_only_that_tensor(coral_twin, tmp_path):
    data = coral_twin.read_bytes()
    info = read_model_info(coral_twin)
    fc = [op for op in info.operators if op.name == "FULLY_CONNECTED"][0]
    index = fc.outputs[0]
    patched = set_tensor_quantization(data, index, 0.0625, -3)
    assert len(patched) == len(data)
    out = tmp_path / "patched.tflite"
    out.write_bytes(patched)
    after = read_model_info(out)
    assert after.tensors[index].scale == [0.0625] and after.tensors[index].zero_point == [-3]
    changed = [i for i, (a, b) in enumerate(zip(info.tensors, after.tensors)) if (a.scale, a.zero_point) !=
               (b.scale, b.zero_point)]
    assert changed == [index]
    # the interpreter runs it with the new parameters
    from edge.model.runtime import load_backend
    interpreter = load_backend().Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    detail = [d for d in interpreter.get_tensor_details() if d["index"] == index][0]
    assert detail["quantization"] == (0.0625, -3)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.zeros((1, 96, 64), np.float32))
    interpreter.invoke()
    conv = [op for op in info.operators if op.name == "CONV_2D"][0]  # a per-channel weight: refused
    with pytest.raises(Exception, match="per channel"):
        set_tensor_quantization(data, conv.inputs[1], 1.0, 0)
