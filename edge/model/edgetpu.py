"""Edge TPU glue: the device-string grammar, finding libedgetpu and the TPUs, loading the delegate.

Uses Coral's pycoral when it is importable (it is not the PyPI package of that name, see docs); otherwise
loads libedgetpu directly through the interpreter backend's load_delegate.
"""

from __future__ import annotations

import ctypes
import glob
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DelegateError

USB_IDS = {("1a6e", "089a"): "unprogrammed", ("18d1", "9302"): "ready"}  # re-enumerates after first use
INSTALL_HINT = ("install the Edge TPU runtime from Coral's apt repository: "
                "sudo apt-get install libedgetpu1-std (see firmware_configs/README.md)")


def library_name() -> str:
    system = platform.system()
    return {"Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}.get(system, "libedgetpu.so.1")


@dataclass(frozen=True)
class TpuDevice:
    type: str  # "usb" or "pci"
    path: str  # sysfs path or /dev/apex_N
    detail: str = ""


def parse_device(spec: str) -> tuple[str | None, int | None]:
    """'' | 'usb' | 'usb:N' | 'pci' | 'pci:N' -> (type, index)."""
    if not spec:
        return None, None
    parts = spec.split(":")
    if parts[0] not in ("usb", "pci") or len(parts) > 2:
        raise DelegateError(f"bad Edge TPU device {spec!r}: use usb, usb:N, pci or pci:N")
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise DelegateError(f"bad Edge TPU device {spec!r}: the index must be a number")
        return parts[0], int(parts[1])
    return parts[0], None


def find_library() -> str | None:
    """The loadable libedgetpu, or None."""
    name = library_name()
    try:
        ctypes.CDLL(name)
        return name
    except OSError:
        return None


def pycoral():
    """Coral's pycoral.utils.edgetpu module when Coral's package is installed, else None."""
    try:
        from pycoral.utils import edgetpu  # Coral's library, from Coral's apt repository
        return edgetpu
    except ImportError:
        return None


def list_edge_tpus(sysfs: str = "/sys", dev: str = "/dev") -> list[TpuDevice]:
    """Edge TPUs on this machine: Coral's own listing when available, else USB ids and /dev/apex_N."""
    coral = pycoral()
    if coral is not None:
        try:
            return [TpuDevice(d["type"], d["path"]) for d in coral.list_edge_tpus()]
        except Exception:
            pass
    found = []
    for vendor_file in sorted(glob.glob(os.path.join(sysfs, "bus/usb/devices/*/idVendor"))):
        folder = Path(vendor_file).parent
        ids = (_read(folder / "idVendor"), _read(folder / "idProduct"))
        if ids in USB_IDS:
            speed = _read(folder / "speed")
            found.append(TpuDevice("usb", str(folder), f"{ids[0]}:{ids[1]} {USB_IDS[ids]}"
                                   + (f", {speed} Mb/s" if speed else "")))
    for apex in sorted(glob.glob(os.path.join(dev, "apex_*"))):
        found.append(TpuDevice("pci", apex))
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def load_delegate(backend, device: str = ""):
    """Load the Edge TPU delegate for `device` ('' = first found). Raises DelegateError with a fix-it hint."""
    kind, index = parse_device(device)
    coral = pycoral()
    options = {"device": device} if device else {}
    if coral is None and find_library() is None:
        raise DelegateError(f"Edge TPU runtime library {library_name()} not found; {INSTALL_HINT}")
    tpus = list_edge_tpus()
    matching = [t for t in tpus if kind is None or t.type == kind]
    if not matching or (index is not None and index >= len(matching)):
        what = f"{kind or 'USB or PCIe'} Edge TPU" + (f" number {index}" if index is not None else "")
        raise DelegateError(f"no {what} found (looked for USB 1a6e:089a / 18d1:9302 and /dev/apex_*); "
                            "check the cable, the udev rules (firmware_configs/udev) and `edge-audio doctor`")
    try:
        if coral is not None and hasattr(coral, "load_edgetpu_delegate"):
            return coral.load_edgetpu_delegate(options)
        return backend.load_delegate(library_name(), options)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DelegateError(f"Edge TPU delegate failed to load for {device or 'the first TPU'}: "
                            f"{str(exc).splitlines()[0]}") from exc
