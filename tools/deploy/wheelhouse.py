"""The project wheel and an offline wheelhouse for a device's platform, built on the host with pip.

A device with no internet installs a release from this folder alone (`pip install --no-index --find-links`).
Binary wheels come from the package index this host's pip is configured for (pip.conf, PIP_INDEX_URL), so local
mirrors and proxies work. pyalsaaudio is published as source only: it is compiled here when this host runs the
device's Python on the device's CPU architecture, otherwise its source goes into the wheelhouse and the device
compiles it at install time (it then needs gcc, python3-dev and libasound2-dev).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge.app.command import add_command, sayer
from edge.core.errors import InputError
from edge.core.files import replace_file, sha256_hex
from tools import REPO

DEFAULT_EXTRAS = ("litert", "mqtt", "alsa", "clips")
KNOWN_EXTRAS = ("litert", "tflite", "mqtt", "alsa", "clips")
SOURCE_ONLY = {"alsa": "pyalsaaudio"}  # extras whose package has no binary wheels on PyPI
MACHINES = ("x86_64", "aarch64")


@dataclass(frozen=True)
class Platform:
    """What a wheel must fit: CPU architecture, CPython version and the C library's version."""
    machine: str  # uname -m
    python: str  # "3.11"
    glibc: str = "2.36"  # Debian 12 / Raspberry Pi OS bookworm

    @property
    def tag(self) -> str:
        return f"{self.machine}-cp{self.python.replace('.', '')}"

    @classmethod
    def parse(cls, text: str) -> "Platform":
        """MACHINE-cpXY[-glibcA.B], e.g. aarch64-cp311 or x86_64-cp310-glibc2.31."""
        m = re.fullmatch(r"(x86_64|aarch64)-cp3(\d{1,2})(?:-glibc(2\.\d+))?", text)
        if not m:
            raise InputError(f"platform {text!r}: expected MACHINE-cp3X[-glibc2.N] with MACHINE one of "
                             f"{', '.join(MACHINES)} (e.g. aarch64-cp311)")
        return cls(m.group(1), f"3.{m.group(2)}", m.group(3) or "2.36")

    def pip_platforms(self) -> list[str]:
        """Every manylinux tag this C library accepts: pip takes the list literally."""
        minor = int(self.glibc.split(".")[1])
        tags = [f"manylinux_2_{v}_{self.machine}" for v in range(17, minor + 1)]
        return tags + [f"manylinux2014_{self.machine}"]

    def is_this_host(self) -> bool:
        return platform.machine() == self.machine and f"{sys.version_info[0]}.{sys.version_info[1]}" == self.python


def parse_extras(text: str) -> tuple[str, ...]:
    extras = tuple(e.strip() for e in text.split(",") if e.strip())
    for e in extras:
        if e not in KNOWN_EXTRAS:
            raise InputError(f"extra {e!r}: expected some of {', '.join(KNOWN_EXTRAS)}")
    return extras


say = sayer("wheelhouse")


def _pip(args: list[str], what: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        errors = [l for l in proc.stderr.splitlines() if l.startswith("ERROR")] or proc.stderr.splitlines()[-1:]
        raise InputError(f"{what} failed: {errors[0] if errors else 'pip exit ' + str(proc.returncode)}")


# what the wheel is built from: setuptools builds in the source folder (build/, *.egg-info), so two builds of the
# checkout at once (two deploys, a deploy and a test) would write over each other's files; each builds a copy
WHEEL_SOURCES = ("pyproject.toml", "README.md", "edge")


def build_project_wheel(out_dir: Path, repo: Path = REPO) -> Path:
    """`pip wheel` of this checkout (no dependencies) into out_dir; returns the wheel."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge-audio-wheel-") as tmp:
        say(f"building the project wheel from {repo}")
        source = Path(tmp) / "src"
        for name in WHEEL_SOURCES:
            if (repo / name).is_dir():
                shutil.copytree(repo / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                source.mkdir(exist_ok=True)
                shutil.copyfile(repo / name, source / name)
        _pip(["wheel", "--no-deps", "-q", "-w", str(Path(tmp) / "dist"), str(source)], "building the project wheel")
        built = sorted((Path(tmp) / "dist").glob("edge_audio-*.whl"))
        if not built:
            raise InputError("building the project wheel produced no edge_audio-*.whl")
        dest = out_dir / built[0].name
        partial = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        shutil.copyfile(built[0], partial)
        os.replace(partial, dest)  # a reader of dest never sees half a wheel
    return dest


def fill(wheelhouse: Path, wheel: Path, extras: tuple[str, ...], target: Platform) -> list[Path]:
    """Put in `wheelhouse` every wheel `wheel[extras]` needs on `target`, and return those files only.

    The folder is shared by builds with other extras and requirements, so it may hold more than this one needs:
    each set is remembered in .sets/ (by the key of what decides it), so an upload carries its own wheels and
    its fingerprint does not change with what other builds left in the folder."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    wanted = _requirements_key(wheel, extras, target)
    listing = wheelhouse / ".sets" / sha256_hex(wanted.encode())[:16]
    names = listing.read_text().split() if listing.is_file() else []
    if names and all((wheelhouse / n).is_file() for n in names):
        say(f"{wheelhouse}: already holds what {wheel.name}[{','.join(extras)}] needs on {target.tag}")
        return _refresh(wheelhouse, wheel, names)
    for old in wheelhouse.glob("edge_audio-*.whl"):  # an earlier build of this version: pip would read its
        if old.resolve() != wheel.resolve():        # requirements instead of this one's (a new extra missed)
            old.unlink()
    with tempfile.TemporaryDirectory(prefix=".fill-", dir=wheelhouse) as tmp:  # this set alone, then moved in
        _download(Path(tmp), wheelhouse, wheel, extras, target)
        names = sorted(p.name for p in Path(tmp).iterdir() if not p.name.startswith("edge_audio-"))
        for name in names:
            os.replace(Path(tmp) / name, wheelhouse / name)
    listing.parent.mkdir(exist_ok=True)
    replace_file(listing, "".join(f"{n}\n" for n in names))
    return _refresh(wheelhouse, wheel, names)


def _download(dest: Path, wheelhouse: Path, wheel: Path, extras: tuple[str, ...], target: Platform) -> None:
    """pip download of wheel[extras]'s dependencies for `target` into dest; what the wheelhouse holds already is
    copied from it (--find-links), the rest comes from this host's package index."""
    binary = [e for e in extras if e not in SOURCE_ONLY]
    requirement = f"{wheel}[{','.join(binary)}]" if binary else str(wheel)
    say(f"binary wheels for {target.tag} (glibc {target.glibc}) from this host's package index")
    platforms = [a for p in target.pip_platforms() for a in ("--platform", p)]
    _pip(["download", "-q", "--only-binary=:all:", *platforms, "--python-version", target.python,
          "--implementation", "cp", "--find-links", str(wheelhouse), "-d", str(dest), requirement,
          *_version_marked(wheel, target)], f"downloading wheels for {target.tag}")
    for extra in extras:
        if extra in SOURCE_ONLY:
            _source_only(SOURCE_ONLY[extra], dest, wheelhouse, target)


def _refresh(wheelhouse: Path, wheel: Path, names: list[str]) -> list[Path]:
    if wheel.parent.resolve() != wheelhouse.resolve():
        shutil.copyfile(wheel, wheelhouse / wheel.name)
    return sorted([wheelhouse / wheel.name, *(wheelhouse / n for n in names)])


def _requires_dist(wheel: Path) -> list[str]:
    import zipfile
    with zipfile.ZipFile(wheel) as z:
        metadata = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(metadata).decode().splitlines()
    return sorted(l.split(":", 1)[1].strip() for l in lines if l.startswith("Requires-Dist:"))


def _version_marked(wheel: Path, target: Platform) -> list[str]:
    """Requirements that depend on the Python version (tomli below 3.11). pip download judges markers by the
    Python running it, not by --python-version, so these are asked for by name."""
    from packaging.requirements import Requirement
    env = {"python_version": target.python, "python_full_version": f"{target.python}.0", "extra": "",
           "platform_machine": target.machine, "sys_platform": "linux", "platform_system": "Linux",
           "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    wanted = []
    for line in _requires_dist(wheel):
        req = Requirement(line)
        if req.marker is not None and "python_" in str(req.marker) and req.marker.evaluate(env):
            wanted.append(f"{req.name}{req.specifier}")
    return wanted


def _requirements_key(wheel: Path, extras: tuple[str, ...], target: Platform) -> str:
    """What decides the wheelhouse's content: the wheel's declared requirements, the extras and the platform."""
    return "\n".join([target.tag, target.glibc, ",".join(sorted(extras)), *_requires_dist(wheel)]) + "\n"


def _source_only(package: str, dest: Path, wheelhouse: Path, target: Platform) -> None:
    if target.is_this_host():
        say(f"{package} has no wheels on PyPI: compiling it here for {target.tag} "
            "(needs gcc and libasound2-dev on this host)")
        _pip(["wheel", "-q", "--no-deps", "--find-links", str(wheelhouse), "-w", str(dest), package],
             f"compiling {package} (apt-get install gcc libasound2-dev)")
    else:
        say(f"{package} has no wheels on PyPI and this host is not {target.tag}: its source goes into the "
            "wheelhouse and the device compiles it at install (it needs gcc, python3-dev and libasound2-dev), "
            "or leave the 'alsa' extra out for WAV/stdin sources")
        _pip(["download", "-q", "--no-deps", "--no-binary=:all:", "--find-links", str(wheelhouse), "-d", str(dest),
              package],
             f"downloading the {package} source")


def size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def cmd_wheelhouse(args) -> int:
    wheel = Path(args.wheel) if args.wheel else build_project_wheel(Path(args.out))
    extras = parse_extras(args.extras)
    for text in args.platform:
        target = Platform.parse(text)
        folder = Path(args.out) / target.tag
        files = fill(folder, wheel, extras, target)
        say(f"{folder}: {len(files)} files, {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB")
        print(folder)
    return 0


def add_parser(sub) -> None:
    p = add_command(sub, "wheelhouse", "the project wheel and its dependencies for a device's platform (offline)",
                    __doc__.split("\n\n", 1)[1],
                    ["python -m tools wheelhouse --platform aarch64-cp311 --out out/wheelhouse",
                     "python -m tools wheelhouse --platform x86_64-cp310-glibc2.31 --extras litert,mqtt"])
    p.add_argument("--platform", action="append", required=True, metavar="MACHINE-cpXY[-glibcA.B]",
                   help="the device's `uname -m` and CPython, e.g. aarch64-cp311 (Raspberry Pi OS bookworm); "
                        "glibc defaults to 2.36 (Debian 12). Repeatable")
    p.add_argument("--out", default="out/wheelhouse", metavar="DIR",
                   help="one folder per platform is made below it (default: %(default)s)")
    p.add_argument("--extras", default=",".join(DEFAULT_EXTRAS), help="default: %(default)s")
    p.add_argument("--wheel", metavar="FILE", help="a built edge_audio wheel (default: build this checkout)")
    p.set_defaults(func=cmd_wheelhouse)
