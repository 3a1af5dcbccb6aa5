"""What the kit prints when all is well, as users run it: no runtime banner (unless --verbose or the daemon's debug
log), progress as whole lines in a log, a wheel build without setuptools warnings, and a host tool whose package
is not installed stopping with one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import ROOT, Result, assert_one_line_error, run_cli
from edge.core.wavfile import write_wav
from edge.model.runtime import BANNERS
from tools.rig.daemon import write_daemon_config

BANNER = BANNERS[0]  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def _quiet_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "EDGE_AUDIO_VERBOSE"}


def _classify(assets, *extra, before=()):
    proc = subprocess.run([sys.executable, "-m", "edge", *before, "classify", str(assets / "audio/dog_975ms.wav"),
                           "--model", str(assets / "models/coral/yamnet_spectra_in.tflite"), *extra],
                          capture_output=True, text=True, cwd=ROOT, env=_quiet_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Dog" in proc.stdout and "on cpu" in proc.stderr
    return proc


def test_classify_prints_no_runtime_banner_and_verbose_shows_it(assets):
    quiet = _classify(assets)
    assert BANNER not in quiet.stdout and BANNER not in quiet.stderr
    assert quiet.stderr.splitlines() == [line for line in quiet.stderr.splitlines() if line.startswith("edge-audio:")]
    loud = _classify(assets, "--verbose")
    assert BANNER in loud.stderr.splitlines() and BANNER not in loud.stdout
    assert loud.stdout == quiet.stdout
    first = _classify(assets, before=["--verbose"])  # before the command's name, too
    assert BANNER in first.stderr.splitlines() and first.stdout == quiet.stdout


@pytest.mark.parametrize("level", ["info", "debug"])
def test_the_daemon_shows_the_banner_only_at_debug_level(level, tmp_path, coral_twin):
    wav = tmp_path / "quiet.wav"
    write_wav(wav, np.zeros(16000, np.int16), 16000)
    config = write_daemon_config(tmp_path / "daemon.toml", audio={"source": "wav", "file": wav},
                                 model={"path": coral_twin, "delegate": "cpu"}, mqtt={"enabled": False})
    proc = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config), "--log-level", level],
                          capture_output=True, text=True, cwd=ROOT, env=_quiet_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (BANNER in proc.stderr.splitlines()) == (level == "debug")
    assert BANNER not in proc.stdout


def test_progress_in_a_log_is_whole_lines(assets):
    clips = sorted((assets / "devset/clips").glob("*.wav"))[:40]
    r = run_cli("evaluate", "--model", assets / "models/coral/yamnet_spectra_in.tflite", "--reference",
                assets / "models/yamnet_classification.tflite", *clips, module="tools")
    assert r.code == 0, r.err
    assert "\r" not in r.err
    progress = [line for line in r.err.splitlines() if line.endswith("/40 files")]
    for model in ("yamnet_classification.tflite", "yamnet_spectra_in.tflite"):
        mine = [line for line in progress if line.startswith(f"  {model}: ")]
        assert mine[0].endswith(": 1/40 files") and mine[-1].endswith(": 40/40 files") and len(mine) <= 11


BLOCK = """
import runpy, sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == {name!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, NotInstalled())
sys.argv = ["tools", *sys.argv[1:]]
runpy.run_module("tools", run_name="__main__", alter_sys=True)
"""


def test_a_host_tool_whose_package_is_not_installed_says_which_install_brings_it(tmp_path):
    wheel = tmp_path / "edge_audio-0.1.0-py3-none-any.whl"  # what the command reads from a built wheel
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("edge_audio-0.1.0.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: edge-audio\nVersion: 0.1.0\nRequires-Dist: numpy>=1.23\n"
                   "Requires-Dist: tomli>=1.1; python_version < \"3.11\"\n")
    proc = subprocess.run([sys.executable, "-c", BLOCK.format(name="packaging"), "wheelhouse", "--platform",
                           "x86_64-cp311", "--wheel", str(wheel), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          timeout=120)
    line = assert_one_line_error(Result(proc), 2, "wheelhouse needs the Python package 'packaging'", "make venv",
                                 "pip install -e '.[tools]'")
    assert line.startswith("python -m tools: error:")


@pytest.mark.slow
def test_the_project_wheel_builds_without_setuptools_warnings(tmp_path):
    source = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info where it builds
    shutil.copytree(ROOT / "edge", source / "edge", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w",
                           str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert "Warning" not in output and "!!" not in output, output
    with zipfile.ZipFile(next((tmp_path / "dist").glob("edge_audio-*.whl"))) as z:
        names = set(z.namelist())
    data = [p.relative_to(ROOT).as_posix() for p in (ROOT / "edge").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert data and set(data) <= names  # every data file still goes in the wheel
