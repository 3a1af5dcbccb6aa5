"""`edge-audio release same`, what a fleet host asks a device before it uploads: the digests the host sends, the
host's config.toml in the upload folder and the install options give the fingerprint the install would compute."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

from edge.app.release.store import Layout, file_digests, fingerprint, install_options, switch
from test_release_steps import make_release  # the release steps' own helper


def test_same_says_unchanged_only_for_the_current_good_release_with_these_files_config_and_options(tmp_path):
    """`edge-audio release same`: the digests a fleet host sends, the host's config.toml in the upload folder and
    the install options give the fingerprint the install would compute; only an equal current good release is
    "unchanged" (then nothing is uploaded)."""
    shared = tmp_path / "shared"  # what the tar holds
    (shared / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(shared / "wheels" / "edge_audio-0.1.0-py3-none-any.whl", "w") as z:
        z.writestr("edge/__init__.py", b"x = 1\n")
    digests = tmp_path / "up.digests.json"
    digests.write_text(json.dumps(file_digests(shared)))
    upload = tmp_path / "up"  # the upload folder, the host's config in it
    upload.mkdir()
    (upload / "config.toml").write_text("[device]\nid = 'a'\n")
    full = tmp_path / "full"  # the upload as the install will see it
    (full / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(full / "wheels" / "edge_audio-0.1.0-py3-none-any.whl", "w") as z:
        z.writestr("edge/__init__.py", b"x = 1\n")
    (full / "config.toml").write_text("[device]\nid = 'a'\n")
    layout = Layout.at(str(tmp_path / "p"))
    layout.create()
    release = make_release(layout, "20250101T000000Z-0.1.0")
    release.save(fingerprint=fingerprint(full, install_options(None, ["device.id=a"], "mqtt", False, "none")))

    def same(*more: str) -> dict:
        r = subprocess.run([sys.executable, "-m", "edge", "release", "same", "--prefix", str(layout.prefix),
                            "--digests", str(digests), "--stage", str(upload), "--service", "none", "--extras",
                            "mqtt", "--json", *more], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    assert same("--set=device.id=a") == {"result": "different", "release": None}  # nothing current yet
    switch(layout, release)
    assert same("--set=device.id=a") == {"result": "unchanged", "release": release.id}
    plain = subprocess.run([sys.executable, "-m", "edge", "release", "same", "--prefix", str(layout.prefix),
                            "--digests", str(digests), "--stage", str(upload), "--service", "none", "--extras",
                            "mqtt", "--set=device.id=a"], capture_output=True, text=True)
    assert plain.stdout == f"{release.id} is current with the same files, config and options: nothing to upload\n"
    assert same("--set=device.id=b")["result"] == "different"
    (upload / "config.toml").write_text("[device]\nid = 'b'\n")
    assert same("--set=device.id=a")["result"] == "different"
    digests.write_text("[1, 2")
    r = subprocess.run([sys.executable, "-m", "edge", "release", "same", "--prefix", str(layout.prefix),
                        "--digests", str(digests), "--stage", str(upload)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "--digests" in r.stderr, r.stderr
