"""The compatibility table, the install lines, telling runtime builds apart, finding libedgetpu without loading
it, a fake USB Coral's listing, and the device-access hints: small real inputs (a dpkg status file, a sysfs
tree), no mocks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge.core.errors import DelegateError
from edge.app import access
from edge.model import compat, edgetpu
from fakelib import CORAL_16_LABEL, UNKNOWN_LABEL, make_fake_usb_tpu

Build = compat.RuntimeBuild


@pytest.mark.parametrize("build,key", [
    (Build(package="libedgetpu1-std 16.0"), compat.CORAL_16),
    (Build(package="libedgetpu1-max 16.0tf2.17.1-1"), "tf2.17.1"),
    (Build(package="libedgetpu1-std 16.0TF2.13.1-2"), "tf2.13.1"),
    (Build(label=CORAL_16_LABEL), compat.CORAL_16),
    (Build(label=UNKNOWN_LABEL), "unknown"),
    (Build(), "unknown"),
])
def test_builds_are_told_apart(build, key):
    assert build.key == key


@pytest.mark.parametrize("build,backend,version,verdict", [
    (Build(label=CORAL_16_LABEL), "tflite_runtime", "2.5.0.post1", compat.KNOWN_GOOD),
    (Build(label=CORAL_16_LABEL), "tflite_runtime", "2.11.0", compat.KNOWN_GOOD),
    (Build(label=CORAL_16_LABEL), "tflite_runtime", "2.12.0", compat.KNOWN_BAD),
    (Build(label=CORAL_16_LABEL), "tflite_runtime", "2.14.0", compat.KNOWN_BAD),
    (Build(label=CORAL_16_LABEL), "ai_edge_litert", "2.3.0", compat.KNOWN_BAD),
    (Build(label=CORAL_16_LABEL), "tensorflow", "2.21.0", compat.KNOWN_BAD),
    (Build(package="libedgetpu1-max 16.0tf2.17.1-1"), "tflite_runtime", "2.17.1", compat.KNOWN_GOOD),
    (Build(package="libedgetpu1-max 16.0tf2.17.1-1"), "tflite_runtime", "2.18.0", compat.UNTESTED),
    (Build(package="libedgetpu1-max 16.0tf2.17.1-1"), "ai_edge_litert", "2.3.0", compat.UNTESTED),
    (Build(package="libedgetpu1-std 16.0tf2.13.1-2"), "tflite_runtime", "2.15.0", compat.KNOWN_GOOD),
    (Build(label=UNKNOWN_LABEL), "ai_edge_litert", "2.3.0", compat.UNTESTED),
])
def test_the_table(build, backend, version, verdict):
    found = compat.lookup(build, backend, version)
    assert found.verdict == verdict
    if verdict != compat.UNTESTED:
        assert "https://" in found.entry.source and found.entry.basis in ("reported", "pinned", "inferred")


def test_every_entry_has_a_source():
    for entry in compat.TABLE:
        assert entry.source.count("https://") >= (0 if entry.basis == "inferred" else 1), entry
        assert entry.verdict in (compat.KNOWN_GOOD, compat.KNOWN_BAD)


def test_install_lines():
    line = compat.install_line("bullseye", "3.9", "aarch64")
    assert "libedgetpu1-std" in line and "tflite-runtime==2.11.0" in line and "numpy<2" in line
    line = compat.install_line("bookworm", "3.11", "aarch64")
    assert "16.0tf2.17.1-1.bookworm_arm64.deb" in line and "cp311-cp311-linux_aarch64.whl" in line
    assert "no sha256" in line
    assert "bookworm_amd64.deb" in compat.install_line("bookworm", "3.11", "x86_64")
    line = compat.install_line("trixie", "3.13", "aarch64")
    assert line.startswith("no matched Edge TPU pair is known") and "ai-edge-litert" in line


def test_version_tuples():
    assert compat.version_tuple("2.5.0.post1") == (2, 5, 0)
    assert compat.version_tuple("2.11.0") < compat.version_tuple("2.12") <= compat.version_tuple("2.12.0")


def test_dpkg_status_names_the_installed_runtime(tmp_path):
    status = tmp_path / "status"
    status.write_text("Package: libusb-1.0-0\nStatus: install ok installed\nVersion: 2:1.0.26-1\n\n"
                      "Package: libedgetpu1-max\nStatus: deinstall ok config-files\nVersion: 16.0\n\n"
                      "Package: libedgetpu1-std\nStatus: install ok installed\nDescription: Support library\n"
                      " for Edge TPU\nVersion: 16.0tf2.17.1-1\n")
    assert edgetpu.runtime_package(str(status)) == "libedgetpu1-std 16.0tf2.17.1-1"
    assert edgetpu.runtime_package(str(tmp_path / "none")) == ""


def test_the_library_is_found_on_the_library_path_without_loading_it(tmp_path, monkeypatch):
    (tmp_path / "libedgetpu.so.1").write_bytes(b"not an ELF file: loading it would fail")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"/nonexistent:{tmp_path}")
    assert edgetpu.locate_library() == str(tmp_path / "libedgetpu.so.1")


def test_a_fake_usb_coral_is_listed_with_its_device_node(tmp_path, monkeypatch):
    for name, value in make_fake_usb_tpu(tmp_path).items():
        monkeypatch.setenv(name, value)
    tpu = edgetpu.find_tpu("usb:0")
    assert tpu.type == "usb" and tpu.node.endswith("/dev/bus/usb/002/003") and "18d1:9302" in tpu.detail
    with pytest.raises(DelegateError, match="no pci Edge TPU found"):
        edgetpu.find_tpu("pci")


def test_access_hint_names_the_missing_group():
    plugdev = 46
    line = access.access_hint("/dev/bus/usb/002/003", stat.S_IFCHR | 0o660, 0, plugdev, 1000, {1000, 29}, "pi")
    assert "read/write for group" in line and "sudo usermod -aG" in line and "pi" in line
    line = access.access_hint("/dev/apex_0", stat.S_IFCHR | 0o600, 0, 0, 1000, {1000}, "pi")
    assert "udev rules" in line and "crw-------" in line


def test_unit_groups_add_up_and_reset(tmp_path):
    unit = tmp_path / "edge-audio.service"
    unit.write_text("[Service]\nSupplementaryGroups=audio\nSupplementaryGroups=plugdev apex\n")
    assert access.unit_groups(str(unit)) == ["audio", "plugdev", "apex"]
    unit.write_text("[Service]\nSupplementaryGroups=audio\nSupplementaryGroups=\nSupplementaryGroups=apex\n")
    assert access.unit_groups(str(unit)) == ["apex"]
    assert access.unit_groups(str(tmp_path / "absent")) is None


def test_the_shipped_unit_joins_the_group_of_every_coral_device_file():
    root = Path(__file__).resolve().parents[2] / "edge" / "firmware"
    groups = access.unit_groups(str(root / "systemd" / "edge-audio.service"))
    rules = (root / "udev" / "99-edgetpu-accelerator.rules").read_text()
    ruled = {part.split('"')[1] for part in rules.split() if part.startswith("GROUP=")}
    assert ruled == {"plugdev", "apex"} and ruled | {"audio"} <= set(groups)
    sysusers = (root / "sysusers" / "edge-audio.conf").read_text().split()
    assert all(g in sysusers for g in groups)  # every group the unit joins is created if missing



def test_pip_requirements_pin_what_was_hashed_and_say_what_was_not():
    (line,) = compat.pip_requirements("bullseye", "3.9", "aarch64")
    assert line.startswith("tflite-runtime==2.11.0 ") and line.count("--hash=sha256:") == 2
    comment, url = compat.pip_requirements("bookworm", "3.11", "aarch64")
    assert comment.startswith("# no sha256 pin") and url.endswith("tflite_runtime-2.17.1-cp311-cp311-linux_aarch64.whl")
    assert compat.pip_requirements("trixie", "3.13", "aarch64") == []
    assert compat.matched_pair("bullseye", "3.9").numpy == "numpy<2"
