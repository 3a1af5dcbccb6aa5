"""What a benchmark ran on: board, CPU, governor, temperature and throttling, runtime, Edge TPU.

Everything is read from /proc and /sys where it exists; what cannot be read is None, never a guess.
"""

from __future__ import annotations

import glob
import os
import platform
import subprocess
from pathlib import Path

# firmware's get_throttled bits (Raspberry Pi): now / since boot
THROTTLE_BITS = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled", 3: "soft temperature limit",
                 16: "under-voltage occurred", 17: "frequency capping occurred", 18: "throttling occurred",
                 19: "soft temperature limit occurred"}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip("\x00\n ")
    except OSError:
        return None


def board_model(root: str = "/") -> str | None:
    return _read(os.path.join(root, "proc/device-tree/model")) or None


def cpu_model(root: str = "/") -> str | None:
    text = _read(os.path.join(root, "proc/cpuinfo")) or ""
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or None


def governors(root: str = "/") -> dict:
    """{cpuN: governor} for every CPU that has cpufreq."""
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"))):
        out[Path(path).parent.parent.name] = _read(path)
    return out


def temperatures_c(root: str = "/") -> dict:
    out = {}
    for zone in sorted(glob.glob(os.path.join(root, "sys/class/thermal/thermal_zone*"))):
        raw = _read(os.path.join(zone, "temp"))
        if raw and raw.lstrip("-").isdigit():
            name = _read(os.path.join(zone, "type")) or Path(zone).name
            out[name] = int(raw) / 1000.0
    return out


def throttling(root: str = "/") -> dict | None:
    """Raspberry Pi firmware throttling flags (sysfs get_throttled, else `vcgencmd get_throttled`)."""
    raw = None
    for path in glob.glob(os.path.join(root, "sys/devices/platform/soc/soc:firmware/get_throttled")) + \
            glob.glob(os.path.join(root, "sys/devices/platform/soc/soc:firmware/raspberrypi-hwmon/*/get_throttled")):
        raw = _read(path)
        if raw:
            break
    if raw is None and root == "/":
        try:
            res = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2)
            if res.returncode == 0 and "=" in res.stdout:
                raw = res.stdout.strip().split("=", 1)[1]
        except (OSError, subprocess.SubprocessError):
            raw = None
    if raw is None:
        return None
    try:
        value = int(raw, 16)
    except ValueError:
        return None
    return {"raw": hex(value), "flags": [name for bit, name in THROTTLE_BITS.items() if value >> bit & 1]}


def libedgetpu_variant() -> dict:
    """Which libedgetpu is installed (found, not loaded) and the Debian package that installed it: -std
    (throttled clock) or -max (full clock), with its version."""
    from ..model import edgetpu
    package = edgetpu.runtime_package()
    return {"library": edgetpu.locate_library(), "package": package.split(" ")[0] if package else None,
            "version": package.split(" ")[-1] if package else None}


BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def blas() -> dict:
    """NumPy's BLAS (the front end's matrix products run on it) and the thread limit set in the environment.
    A multi-threaded OpenBLAS keeps its worker threads spinning after each small product: real CPU time."""
    import numpy as np
    name = None
    try:
        name = np.show_config(mode="dicts")["Build Dependencies"]["blas"].get("name")
    except Exception:  # numpy < 2 has no mode=; the name is only informative
        name = None
    limit = next((f"{v}={os.environ[v]}" for v in BLAS_THREAD_VARS if os.environ.get(v, "0") != "0"), None)
    return {"name": name, "thread_limit": limit}


def environment(backend=None) -> dict:
    from .. import __version__
    from ..model import edgetpu
    govs = governors()
    distinct = sorted({g for g in govs.values() if g})
    env = {
        "edge_audio": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "board": board_model(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "governor": distinct[0] if len(distinct) == 1 else (",".join(distinct) or None),
        "temperature_c": temperatures_c(),
        "throttling": throttling(),
        "backend": {"name": backend.name, "version": backend.version} if backend is not None else None,
        "libedgetpu": libedgetpu_variant(),
        "blas": blas(),
        "edge_tpus": [{"type": t.type, "path": t.path, "detail": t.detail} for t in edgetpu.list_edge_tpus()],
    }
    return env


def warnings(env: dict) -> list[str]:
    """Things that make figures unrepresentative, one line each."""
    out = []
    gov = env.get("governor")
    if gov and gov != "performance":
        out.append(f"CPU governor is '{gov}', not 'performance': figures will vary with the clock "
                   "(echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)")
    thr = env.get("throttling")
    if thr and thr["flags"]:
        out.append(f"the board reports {', '.join(thr['flags'])} ({thr['raw']}): check the power supply and cooling")
    hot = {k: v for k, v in (env.get("temperature_c") or {}).items() if v >= 80.0}
    if hot:
        out.append("hot: " + ", ".join(f"{k} {v:.0f} C" for k, v in hot.items()) + " (figures may be throttled)")
    b = env.get("blas") or {}
    if (b.get("name") or "").find("openblas") >= 0 and not b.get("thread_limit") and (env.get("cpu_count") or 1) > 1:
        out.append("NumPy's OpenBLAS may use every core and its threads spin after each front-end product, which "
                   "shows as CPU at real time; run with OPENBLAS_NUM_THREADS=1 to see the difference")
    return out
