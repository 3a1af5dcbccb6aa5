import json
import platform

from conftest import run_cli

from edge.model import compat, edgetpu


def test_doctor_reports_what_a_user_needs(assets):
    r = run_cli("fetch", "bundle", "--mirror", assets, module="tools")
    assert r.code == 0, r.err
    r = run_cli("doctor", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["backend_in_use"].startswith("ai_edge_litert")
    assert report["backends"]["ai_edge_litert"][0].isdigit()
    assert report["edgetpu_library"] == "libedgetpu.so.1 not found"
    assert report["edge_tpus"] == []
    assert report["model_bundle"]["status"] == "ok (sha256 verified)"
    assert isinstance(report["alsa_capture"], list)
    # the Edge TPU runtime: none here, so no probe, and the install line for this OS, Python and machine
    assert report["edgetpu_package"] is None and report["edgetpu_probe"]["verdict"] == "not run"
    release = edgetpu.os_release()
    python = ".".join(platform.python_version_tuple()[:2])
    assert report["install_line"] == compat.install_line(release.get("VERSION_CODENAME", ""), python,
                                                         platform.machine())
    if (release.get("VERSION_CODENAME"), python, platform.machine()) == ("bookworm", "3.11", "x86_64"):
        assert "libedgetpu1-std_16.0tf2.17.1-1.bookworm_amd64.deb" in report["install_line"]
        assert "tflite_runtime-2.17.1-cp311-cp311-linux_x86_64.whl" in report["install_line"]
    r = run_cli("doctor")
    assert r.code == 0 and "libedgetpu.so.1 not found" in r.out and "not run: no libedgetpu" in r.out
    assert f"in use          {report['backend_in_use']}" in r.out
    assert f"install         {report['install_line']}" in r.out


def test_doctor_without_a_bundle_says_so():
    r = run_cli("doctor")
    assert r.code == 0 and "model bundle" in r.out and "make model" in r.out
