"""Stand-ins for the Edge TPU side of a board, for tests on machines without a Coral: small shared libraries
built with the system C compiler and installed as `libedgetpu.so.1` in a folder for LD_LIBRARY_PATH, and a USB
Edge TPU under an overridable sysfs root (EDGE_AUDIO_SYSFS_ROOT) with its /dev/bus/usb node under
EDGE_AUDIO_DEV_ROOT."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "fakes" / "libedgetpu_fake.c"
# The build label Coral's own libedgetpu 16.0 (built against TensorFlow 2.5) reports through edgetpu_version()
CORAL_16_LABEL = "BuildLabel(COMPILER=6.3.0 20170516,DATE=redacted,TIME=redacted), RuntimeVersion(14)"
UNKNOWN_LABEL = "BuildLabel(COMPILER=test,DATE=test,TIME=test), RuntimeVersion(14)"

# variant -> (compiler defines, edgetpu_version() label)
VARIANTS = {
    "segv": (["-DFAKE_SEGV"], UNKNOWN_LABEL),  # the delegate entry point segfaults
    "hang": (["-DFAKE_HANG"], UNKNOWN_LABEL),  # ... never returns
    "null": ([], UNKNOWN_LABEL),  # ... returns no delegate
    # a build the compatibility table marks known-bad with the installed backend; its entry point segfaults too,
    # so a test fails loudly if the kit ever calls it in its own process
    "known-bad": (["-DFAKE_SEGV"], CORAL_16_LABEL),
}


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def build_fake_libedgetpu(variant: str, folder: Path) -> Path:
    """Compile the fake runtime as folder/libedgetpu.so.1; returns the folder (for LD_LIBRARY_PATH)."""
    defines, label = VARIANTS[variant]
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc) on this machine: apt-get install gcc")
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "libedgetpu.so.1"
    subprocess.run([cc, "-shared", "-fPIC", "-O0", "-o", str(out), str(SOURCE), *defines,
                    f'-DFAKE_VERSION="{label}"'], check=True, capture_output=True, text=True)
    return folder


def make_fake_usb_tpu(root: Path, ids: tuple[str, str] = ("18d1", "9302"), bus: int = 2, device: int = 3) -> dict:
    """A USB Coral as the kit sees it: sysfs attributes under root/sys and its device node under root/dev.
    Returns the environment that points the kit at them."""
    sysfs = root / "sys"
    folder = sysfs / "bus" / "usb" / "devices" / f"{bus}-1"
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in {"idVendor": ids[0], "idProduct": ids[1], "busnum": str(bus), "devnum": str(device),
                        "speed": "5000"}.items():
        (folder / name).write_text(value + "\n")
    node = root / "dev" / "bus" / "usb" / f"{bus:03d}" / f"{device:03d}"
    node.parent.mkdir(parents=True, exist_ok=True)
    node.write_bytes(b"")
    return {"EDGE_AUDIO_SYSFS_ROOT": str(sysfs), "EDGE_AUDIO_DEV_ROOT": str(root / "dev")}


def fake_tpu_env(variant: str, folder: Path) -> dict:
    """Everything a child process needs to see a USB Coral and the `variant` runtime library."""
    env = make_fake_usb_tpu(folder / "board")
    env["LD_LIBRARY_PATH"] = str(build_fake_libedgetpu(variant, folder / "lib"))
    return env
