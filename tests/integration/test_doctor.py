import grp
import json
import os
import platform
import pwd

import pytest

from conftest import run_cli
from fakelib import make_fake_usb_tpu

from edge.app import access
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
    commands, _, note = report["install_line"].partition("  # ")
    assert f"\n  install         {commands}\n" in r.out and (not note or f"\n                  {note}\n" in r.out)
    assert "#" not in next(line for line in r.out.splitlines() if line.startswith("  install"))


def test_doctor_without_a_bundle_says_so():
    r = run_cli("doctor")
    assert r.code == 0 and "model bundle" in r.out and "make model" in r.out



def _as_nobody(check, *nodes) -> list[str]:
    """check(node) for each node in a forked child that has become 'nobody' (no supplementary groups). The
    interpreter lives under /root here, which 'nobody' cannot run, so the child forks instead of exec'ing."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, check, report, leave without running pytest's teardown
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(grp.getgrnam("nogroup").gr_gid)
            os.setuid(pwd.getpwnam("nobody").pw_uid)
            os.write(write, json.dumps([check(n) for n in nodes]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        out = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(out)


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to another user: needs root")
def test_doctor_says_which_group_a_user_lacks_for_the_tpu_and_the_microphone(tmp_path):
    """A USB Coral whose device file is root:plugdev 0660 (what the udev rule makes) and a capture device
    root:audio 0660, opened as 'nobody': the check doctor prints names the group to join for each."""
    make_fake_usb_tpu(tmp_path)
    tpu = tmp_path / "dev" / "bus" / "usb" / "002" / "003"
    mic = tmp_path / "dev" / "snd" / "pcmC0D0c"
    mic.parent.mkdir(parents=True)
    mic.write_bytes(b"")
    for node, group in ((tpu, "plugdev"), (mic, "audio")):
        os.chown(node, 0, grp.getgrnam(group).gr_gid)
        os.chmod(node, 0o660)
    for folder in [tmp_path, *tmp_path.parents]:  # let nobody reach the files (pytest's folders are 0700)
        if str(folder) in ("/", "/tmp"):
            break
        os.chmod(folder, os.stat(folder).st_mode | 0o005)
    on_tpu, on_mic = _as_nobody(access.check_node, str(tpu), str(mic))
    assert "nobody cannot open" in on_tpu and "group 'plugdev'" in on_tpu, on_tpu
    assert "sudo usermod -aG plugdev nobody" in on_tpu
    assert "group 'audio'" in on_mic and "usermod -aG audio nobody" in on_mic, on_mic
    assert access.check_node(str(tpu)) == "ok"  # root can
    assert access.sound_nodes(str(tmp_path / "dev")) == [str(mic)]
