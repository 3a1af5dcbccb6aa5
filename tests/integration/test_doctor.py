import json

from conftest import run_cli


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
    r = run_cli("doctor")
    assert r.code == 0 and "libedgetpu" in r.out and "apt-get install libedgetpu1-std" in r.out


def test_doctor_without_a_bundle_says_so():
    r = run_cli("doctor")
    assert r.code == 0 and "model bundle" in r.out and "make model" in r.out
