"""`compile`: the compiler log parser on a real log, the process wrapper with a stand-in compiler executable
(a test double that behaves like edgetpu_compiler's command line), and the real no-compiler path."""

from __future__ import annotations

import json
import stat
import sys
import textwrap

import pytest

from conftest import assert_one_line_error, run_cli
from edge.model.bundle import load_bundle
from tools.model.compile import parse_compiler_log

pytestmark = pytest.mark.assets

REAL_STDOUT_TAIL = """\
Model compiled successfully in 1042 ms.

Input model: {model}
Input size: 3.88MiB
Output model: {out}
Output size: 4.11MiB
On-chip memory used for caching model parameters: 3.42MiB
On-chip memory remaining for caching model parameters: 4.31MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 33
Operation log: {log}
"""


def test_parses_the_real_compiler_log(assets):
    text = (assets / "models/coral/compiler_logs/mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.log.txt").read_text()
    log = parse_compiler_log(text)
    assert log.version == "16.0.384591198"
    assert log.input.endswith("mobilenet_v2_1.0_224_inat_bird_quant.tflite")
    assert log.output.endswith("_edgetpu.tflite")
    assert {o.op: o.count for o in log.ops} == {"CONV_2D": 35, "SOFTMAX": 1, "ADD": 10, "FULLY_CONNECTED": 1,
                                                "AVERAGE_POOL_2D": 1, "DEPTHWISE_CONV_2D": 17}
    assert log.mapped_ops == 65 and log.cpu_ops == 0


def test_parses_partial_mapping_and_memory():
    text = textwrap.dedent("""\
        Edge TPU Compiler version 16.0.384591198
        Input: m.tflite
        Output: m_edgetpu.tflite

        Operator                       Count      Status

        CONV_2D                        3          Mapped to Edge TPU
        RFFT2D                         1          Operation not supported
        LOGISTIC                       1          More than one subgraph is not supported
        MEAN                           2          Operation is working on an unsupported data type
        """)
    stdout = REAL_STDOUT_TAIL.format(model="m.tflite", out="m_edgetpu.tflite", log="m_edgetpu.log")
    log = parse_compiler_log(text, stdout)
    assert (log.mapped_ops, log.cpu_ops, log.subgraphs) == (3, 4, 1)
    assert log.memory == {"on_chip_used": "3.42MiB", "on_chip_remaining": "4.31MiB", "off_chip_used": "0.00B"}
    assert log.ops[3].status == "Operation is working on an unsupported data type"
    with pytest.raises(ValueError):
        parse_compiler_log("hello\nworld\n")


def _stand_in_compiler(tmp_path, output_model, status=0, name="fake_edgetpu_compiler"):
    """A test double for edgetpu_compiler: same arguments (-s -o DIR MODEL), same output files (the Edge TPU
    model it 'compiles' is a real one, copied), same log and stdout format."""
    script = tmp_path / "bin" / name
    script.parent.mkdir(exist_ok=True)
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import shutil, sys
        from pathlib import Path
        args = sys.argv[1:]
        out = Path(args[args.index("-o") + 1]); model = Path(args[-1])
        print("Edge TPU Compiler version 16.0.384591198")
        if {status}:
            print("ERROR: model is not fully quantized", file=sys.stderr); sys.exit({status})
        target = out / (model.stem + "_edgetpu.tflite"); log = out / (model.stem + "_edgetpu.log")
        shutil.copyfile({str(output_model)!r}, target)
        log.write_text("Edge TPU Compiler version 16.0.384591198\\nInput: %s\\nOutput: %s\\n\\n"
                       "Operator                       Count      Status\\n\\n"
                       "CONV_2D                        14         Mapped to Edge TPU\\n"
                       "DEPTHWISE_CONV_2D              13         Mapped to Edge TPU\\n"
                       "QUANTIZE                       1          Mapped to Edge TPU\\n" % (model, target))
        print({REAL_STDOUT_TAIL!r}.format(model=model, out=target, log=log))
        """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_compile_with_the_stand_in_compiler(assets, coral_twin, class_map, tmp_path):
    fake = _stand_in_compiler(tmp_path, assets / "models/coral/yamnet_spectra_in_edgetpu.tflite")
    out = tmp_path / "tpu"
    r = run_cli("compile", coral_twin, "--labels", class_map, "--out", out, "--compiler", fake, "--json",
                module="tools")
    assert r.code == 0, r.err
    assert "28 ops mapped to the Edge TPU, 0 on the CPU, on-chip memory 3.42MiB" in r.err, r.err
    bundle = load_bundle(out)
    assert bundle.edgetpu_model.name == "yamnet_spectra_in_edgetpu.tflite"
    assert bundle.cpu_model.name == "yamnet_spectra_in.tflite" and bundle.cpu_model.is_file()
    c = bundle.manifest["compiler"]
    assert c["version"] == "16.0.384591198" and c["mapped_ops"] == 28 and c["cpu_ops"] == 0
    assert c["memory"]["on_chip_used"] == "3.42MiB" and c["subgraphs"] == 1
    assert json.loads((out / "check.json").read_text())["predicted_cpu_ops"] == []
    # the runtime picks the CPU twin from this bundle when no Edge TPU is present
    r = run_cli("classify", assets / "audio/dog_975ms.wav", "--model", out, "--delegate", "auto", "--json")
    assert r.code == 0, r.err
    assert "Dog" in r.out


def test_compiler_output_without_the_edgetpu_op_is_rejected(assets, coral_twin, class_map, tmp_path):
    fake = _stand_in_compiler(tmp_path, coral_twin)  # "compiles" to a plain CPU model
    r = run_cli("compile", coral_twin, "--labels", class_map, "--out", tmp_path / "o", "--compiler", fake,
                module="tools")
    assert_one_line_error(r, 2, "no edgetpu-custom-op")


def test_compiler_failure_is_one_line(coral_twin, class_map, tmp_path):
    fake = _stand_in_compiler(tmp_path, coral_twin, status=1)
    r = run_cli("compile", coral_twin, "--labels", class_map, "--out", tmp_path / "o", "--compiler", fake,
                module="tools")
    assert_one_line_error(r, 2, "failed with status 1", "not fully quantized")


def test_no_compiler_writes_the_cpu_bundle_and_says_how_to_get_it(coral_twin, class_map, tmp_path):
    env = {"PATH": str(tmp_path / "empty")}
    out = tmp_path / "cpu"
    r = run_cli("compile", coral_twin, "--labels", class_map, "--out", out, env=env, module="tools")
    assert r.code == 0, r.err
    lines = [l for l in r.err_lines if "edgetpu_compiler" in l]
    assert len(lines) == 1 and "apt" in lines[0] and "x86-64" in lines[0]
    bundle = load_bundle(out)
    assert bundle.edgetpu_model is None and bundle.manifest["compiler"] is None
    assert bundle.input_kind == "logmel_patch"
    assert json.loads((out / "check.json").read_text())["predicted_cpu_ops"] == []
    r = run_cli("compile", coral_twin, "--labels", class_map, "--out", tmp_path / "x", "--require-edgetpu",
                env=env, module="tools")
    assert_one_line_error(r, 2, "not on PATH", "apt")
    assert not (tmp_path / "x").exists()


def test_compile_input_errors(assets, tmp_path, coral_twin):
    assert_one_line_error(run_cli("compile", tmp_path / "nope.tflite", "--out", tmp_path / "o", module="tools"),
                          2, "not found")
    edgetpu = assets / "models/coral/yamnet_spectra_in_edgetpu.tflite"
    assert_one_line_error(run_cli("compile", edgetpu, "--out", tmp_path / "o", module="tools"), 2,
                          "already compiled")
    assert_one_line_error(run_cli("compile", coral_twin, "--out", tmp_path / "o", "--compiler",
                                  tmp_path / "no_such_compiler", module="tools"), 2, "--compiler")
