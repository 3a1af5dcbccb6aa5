"""Edge TPU glue: the device-string grammar, finding libedgetpu (without loading it) and the TPUs, loading the
delegate.

The library is found the way the dynamic loader would find it but without loading it: loading it is the
probe's job (edge/model/edgetpu_probe.py), in a child process. Coral's PyCoral, when importable (it is not the PyPI
package of that name, see docs), is only used to list the TPUs; the delegate is always loaded through the
interpreter backend's own load_delegate, the same way the probe loads it.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DelegateError

USB_IDS = {("1a6e", "089a"): "unprogrammed", ("18d1", "9302"): "ready"}  # re-enumerates after first use
RUNTIME_PACKAGES = ("libedgetpu1-std", "libedgetpu1-max", "libedgetpu1-legacy-std", "libedgetpu1-legacy-max")
ENV_SYSFS = "EDGE_AUDIO_SYSFS_ROOT"  # where sysfs is: overridable, to look at a board image or a stand-in
ENV_DEV = "EDGE_AUDIO_DEV_ROOT"  # where /dev is, likewise
DPKG_STATUS = "/var/lib/dpkg/status"


def library_name() -> str:
    system = platform.system()
    return {"Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}.get(system, "libedgetpu.so.1")


def sysfs_root() -> str:
    return os.environ.get(ENV_SYSFS) or "/sys"


def dev_root() -> str:
    return os.environ.get(ENV_DEV) or "/dev"


@dataclass(frozen=True)
class TpuDevice:
    type: str  # "usb" or "pci"
    path: str  # sysfs path or /dev/apex_N
    detail: str = ""
    node: str = ""  # the device file a process opens: /dev/bus/usb/BBB/DDD or /dev/apex_N ('' = unknown)


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


def locate_library() -> str | None:
    """The libedgetpu file the dynamic loader would pick (LD_LIBRARY_PATH, the loader cache, the usual folders),
    found without loading it; None when there is none."""
    name = library_name()
    if platform.system() != "Linux":
        import ctypes.util
        return ctypes.util.find_library("edgetpu")
    for folder in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if folder and os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    cached = _loader_cache(name)
    if cached:
        return cached
    import sysconfig  # here and below: the daemon on the CPU delegate never looks for a TPU (its memory)
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for folder in (f"/usr/lib/{multiarch}", f"/lib/{multiarch}", "/usr/local/lib", "/usr/lib", "/lib"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def _loader_cache(name: str) -> str | None:
    import subprocess
    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig"):
        if not os.path.exists(ldconfig):
            continue
        try:
            out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        for line in out.splitlines():
            left, _, path = line.partition("=>")
            if left.strip().split(" ")[0] == name and os.path.isfile(path.strip()):
                return path.strip()
        return None
    return None


def runtime_package(status_file: str = DPKG_STATUS) -> str:
    """The installed libedgetpu Debian package and its version ('libedgetpu1-std 16.0'), or ''."""
    try:
        text = Path(status_file).read_text(errors="replace")
    except OSError:
        return ""
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Package") in RUNTIME_PACKAGES and "install ok installed" in fields.get("Status", ""):
            return f"{fields['Package']} {fields.get('Version', '?')}"
    return ""


def os_release(path: str = "/etc/os-release") -> dict:
    """/etc/os-release as a dict (ID, VERSION_CODENAME, PRETTY_NAME, ...); {} when absent."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key: value.strip().strip('"') for key, value in pairs}


def pycoral():
    """Coral's pycoral.utils.edgetpu module when Coral's package is installed, else None."""
    try:
        from pycoral.utils import edgetpu  # Coral's library, from Coral's apt repository
        return edgetpu
    except ImportError:
        return None


def list_edge_tpus(sysfs: str | None = None, dev: str | None = None) -> list[TpuDevice]:
    """Edge TPUs on this machine: Coral's own listing when available, else USB ids and /dev/apex_N."""
    sysfs, dev = sysfs or sysfs_root(), dev or dev_root()
    coral = pycoral() if sysfs == "/sys" else None
    if coral is not None:
        try:
            return [TpuDevice(d["type"], d["path"], "", d["path"] if d["type"] == "pci" else "")
                    for d in coral.list_edge_tpus()]
        except Exception:
            pass
    import glob
    found = []
    for vendor_file in sorted(glob.glob(os.path.join(sysfs, "bus/usb/devices/*/idVendor"))):
        folder = Path(vendor_file).parent
        ids = (_read(folder / "idVendor"), _read(folder / "idProduct"))
        if ids in USB_IDS:
            speed = _read(folder / "speed")
            bus, number = _read(folder / "busnum"), _read(folder / "devnum")
            node = os.path.join(dev, "bus", "usb", f"{int(bus):03d}", f"{int(number):03d}") \
                if bus.isdigit() and number.isdigit() else ""
            found.append(TpuDevice("usb", str(folder), f"{ids[0]}:{ids[1]} {USB_IDS[ids]}"
                                   + (f", {speed} Mb/s" if speed else ""), node))
    for apex in sorted(glob.glob(os.path.join(dev, "apex_*"))):
        found.append(TpuDevice("pci", apex, "", apex))
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def find_tpu(device: str = "") -> TpuDevice:
    """The TPU `device` names ('' = the first found), or DelegateError saying what was looked for."""
    kind, index = parse_device(device)
    matching = [t for t in list_edge_tpus() if kind is None or t.type == kind]
    if not matching or (index is not None and index >= len(matching)):
        what = f"{kind or 'USB or PCIe'} Edge TPU" + (f" number {index}" if index is not None else "")
        raise DelegateError(f"no {what} found (looked for USB 1a6e:089a / 18d1:9302 and /dev/apex_*); "
                            "check the cable, the udev rules (PREFIX/current/udev/ in a release) and "
                            "`edge-audio doctor`")
    return matching[index or 0]


def load_delegate(backend, device: str, library: str):
    """Load the Edge TPU delegate in this process, from `library` (a path locate_library() found and a probe
    passed). Raises DelegateError with the first line of the backend's error."""
    try:
        return backend.load_delegate(library, {"device": device} if device else {})
    except (OSError, ValueError, RuntimeError) as exc:
        raise DelegateError(f"Edge TPU delegate failed to load for {device or 'the first TPU'}: "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__}"
                            ) from exc
