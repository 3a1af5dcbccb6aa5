"""Installing the default bundle (offline mirror and real HTTP on loopback), and bundle verification."""

import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_cli
from edge.model import assets
from edge.model.bundle import load_bundle
from edge.core.errors import InputError, ModelError


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_is_verified_against_its_pin(http_root, tmp_path, capfd):
    root, base = http_root
    (root / "model.tflite").write_bytes(b"model bytes" * 1000)
    good = hashlib.sha256(b"model bytes" * 1000).hexdigest()
    asset = assets.Asset("model.tflite", base + "model.tflite", good, "models/model.tflite")
    path = assets.fetch(asset, tmp_path / "dest", mirror=None)
    assert path.read_bytes() == b"model bytes" * 1000
    assert "100%" in capfd.readouterr().err  # progress was shown
    bad = assets.Asset("other.tflite", base + "model.tflite", "0" * 64, "models/model.tflite")
    with pytest.raises(InputError, match="refusing to install"):
        assets.fetch(bad, tmp_path / "dest", mirror=None)
    assert not (tmp_path / "dest" / "other.tflite").exists()


def test_offline_download_fails_with_a_clear_message(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    asset = assets.Asset("m.tflite", f"http://127.0.0.1:{port}/m.tflite", "0" * 64, "models/m.tflite")
    with pytest.raises(InputError, match="cannot download .* set EDGE_AUDIO_ASSETS"):
        assets.fetch(asset, tmp_path, mirror=None)


def test_archive_member_is_extracted(http_root, tmp_path):
    import io
    import tarfile
    root, base = http_root
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("1.tflite")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    (root / "download").write_bytes(buf.getvalue())
    asset = assets.Asset("yamnet.tflite", base + "download", hashlib.sha256(b"hello").hexdigest(), "x", member="1.tflite")
    assert assets.fetch(asset, tmp_path, mirror=None).read_bytes() == b"hello"


def test_make_model_from_the_mirror_then_classify_with_the_default(assets, tmp_path):
    r = run_cli("fetch", "bundle", "--mirror", assets, module="tools")
    assert r.code == 0, r.err
    bundle = load_bundle(Path(r.out.strip()))
    assert bundle.edgetpu_model.name == "yamnet_spectra_in_edgetpu.tflite" and bundle.input_kind == "logmel_patch"
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"yamnet_spectra_in_edgetpu.tflite", "yamnet_spectra_in.tflite",
                                      "yamnet_class_map.csv", "miaow_16k.wav"}
    assert manifest["selftest"] == {"clip": "miaow_16k.wav", "expected": "Cat"}
    r = run_cli("classify", "--json", assets / "audio" / "dog_975ms.wav")
    assert r.code == 0 and "Dog" in r.out
    assert any("using the CPU twin yamnet_spectra_in.tflite" in l for l in r.err_lines)
    # a damaged bundle is refused before anything is loaded
    cpu = bundle.path / "yamnet_spectra_in.tflite"
    cpu.chmod(0o644)
    cpu.write_bytes(cpu.read_bytes()[:-10] + b"0123456789")
    r = run_cli("classify", assets / "audio" / "dog_975ms.wav")
    assert_one_line_error(r, 2, "sha256 does not match")


def test_mirror_without_the_file(tmp_path):
    r = run_cli("fetch", "bundle", "--mirror", tmp_path, module="tools")
    assert_one_line_error(r, 2, "not in the offline mirror")


def test_no_default_bundle_tells_how_to_get_one(assets):
    r = run_cli("classify", assets / "audio" / "dog_975ms.wav")
    assert_one_line_error(r, 2, "make model")


def test_malformed_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text('{"schema": 1, "models": {}}')
    with pytest.raises(ModelError, match="malformed manifest"):
        load_bundle(tmp_path)


def _bundle_with(tmp_path, assets, **extra):
    import shutil
    from edge.model.bundle import write_manifest
    shutil.copy(assets / "models/coral/yamnet_spectra_in.tflite", tmp_path / "m.tflite")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    write_manifest(tmp_path, {"name": "t", "input_kind": "logmel_patch", "models": {"cpu": "m.tflite"},
                              "labels": "labels.txt", **extra})
    return tmp_path


def test_thresholds_and_selftest_are_read_and_the_clip_is_pinned(tmp_path, assets):
    (tmp_path / "clip.wav").write_bytes(b"RIFF")
    b = load_bundle(_bundle_with(tmp_path, assets, thresholds={"a": 0.7},
                                 selftest={"clip": "clip.wav", "expected": "a"}))
    assert b.thresholds == {"a": 0.7} and b.selftest.clip == tmp_path / "clip.wav" and b.selftest.expected == "a"
    assert "clip.wav" in b.manifest["files"]
    (tmp_path / "clip.wav").write_bytes(b"RIFX")
    with pytest.raises(ModelError, match="clip.wav: sha256 does not match"):
        load_bundle(tmp_path)


@pytest.mark.parametrize("extra,needle", [({"thresholds": {"a": 2}}, "between 0 and 1"),
                                          ({"thresholds": ["a"]}, "thresholds"),
                                          ({"selftest": {"clip": "x.wav"}}, "selftest"),
                                          ({"clip_pool": "median"}, "clip_pool")])
def test_bad_thresholds_or_selftest_are_one_line(tmp_path, assets, extra, needle):
    if "selftest" in extra:
        (tmp_path / "x.wav").write_bytes(b"RIFF")
    with pytest.raises(ModelError, match=needle):
        load_bundle(_bundle_with(tmp_path, assets, **extra))
