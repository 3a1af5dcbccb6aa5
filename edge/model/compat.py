"""Which Edge TPU runtime (libedgetpu) builds work with which interpreter backends: the one table, each entry
with its verdict and its source, and the matched pairs to install per OS and Python.

libedgetpu is compiled against one TensorFlow Lite revision and the delegate interface it implements is not
stable across revisions: a mismatched pair can segfault inside load_delegate. A build is identified by the
Debian package that installed it (its version names the TensorFlow revision of community builds, e.g.
16.0tf2.17.1-1) or, failing that, by the label edgetpu_version() returns. That label does not name the
TensorFlow revision; Coral's own release builds report a redacted build date.

Verdicts: known-good and known-bad come from the table; anything not in it is untested, and the probe (a
child process that loads the delegate and runs one invoke) decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KNOWN_GOOD = "known-good"
KNOWN_BAD = "known-bad"
UNTESTED = "untested"

CORAL_16 = "coral-16.0"  # Coral's apt libedgetpu1-std/-max 16.0 (July 2021), built against TensorFlow 2.5
ISSUE_812 = "https://github.com/google-coral/edgetpu/issues/812"
FRIGATE = ("https://github.com/blakeblackshear/frigate/blob/e3fa70189324e5eb3b1dba756c153f6696f457de/"
           "docker/main/")


@dataclass(frozen=True)
class RuntimeBuild:
    """What is known of an installed libedgetpu."""

    label: str = ""  # edgetpu_version(), read in the probe's child process ('' = not read)
    package: str = ""  # owning Debian package and version, e.g. 'libedgetpu1-std 16.0' ('' = unknown)
    path: str = ""  # the library file

    @property
    def key(self) -> str:
        """'coral-16.0', 'tf2.17.1' (a community build against that TensorFlow), or 'unknown'."""
        version = self.package.split(" ")[-1] if self.package else ""
        tf = re.match(r"16\.0tf(\d+\.\d+(?:\.\d+)?)", version, re.IGNORECASE)
        if tf:
            return f"tf{tf.group(1)}"
        if version in ("16.0", "16.0-1"):
            return CORAL_16
        if "DATE=redacted" in self.label and "RuntimeVersion(14)" in self.label:
            return CORAL_16  # the label Coral's 16.0 release reports (firmware_configs/README.md cites it)
        return "unknown"

    def describe(self) -> str:
        key = self.key
        if key == CORAL_16:
            what = "libedgetpu 16.0 (Coral's build, TF 2.5)"
        elif key.startswith("tf"):
            what = f"libedgetpu 16.0 (community build against TF {key[2:]})"
        else:
            what = "libedgetpu (unknown build)"
        detail = ", ".join(x for x in (self.package, f"'{self.label}'" if self.label else "") if x)
        return f"{what} [{detail}]" if detail else what


@dataclass(frozen=True)
class Entry:
    build: str  # RuntimeBuild.key
    backend: str  # interpreter backend name
    low: str  # versions from `low` (inclusive) ...
    high: str  # ... to `high` (exclusive); '' = open
    verdict: str
    basis: str  # 'reported' (seen by the source), 'pinned' (shipped by the source), 'inferred' (reasoned)
    source: str

    def matches(self, build: RuntimeBuild, backend: str, version: str) -> bool:
        if self.build != build.key or self.backend != backend:
            return False
        v = version_tuple(version)
        return (not self.low or v >= version_tuple(self.low)) and (not self.high or v < version_tuple(self.high))


TABLE: tuple[Entry, ...] = (
    Entry(CORAL_16, "tflite_runtime", "2.5", "2.12", KNOWN_GOOD, "reported",
          f"{ISSUE_812}: 'The last version of TensorFlow Lite to support EdgeTPU is 2.11.1'; Coral's own pairing "
          "is tflite_runtime 2.5.0.post1 (https://github.com/google-coral/edgetpu/issues/712)"),
    Entry(CORAL_16, "tflite_runtime", "2.12", "", KNOWN_BAD, "reported",
          f"{ISSUE_812}: every release from 2.12 to 2.15 segfaults with it; "
          "https://github.com/google-coral/libedgetpu/issues/53"),
    Entry(CORAL_16, "ai_edge_litert", "", "", KNOWN_BAD, "inferred",
          f"ai-edge-litert is the same interpreter built from TensorFlow/LiteRT sources newer than 2.15, and "
          f"{ISSUE_812} reports every tflite-runtime after 2.11.1 crashing with this TF 2.5 build; "
          "not observed on a board here"),
    Entry(CORAL_16, "tensorflow", "", "", KNOWN_BAD, "reported",
          "https://github.com/google-coral/edgetpu/issues/126 (Coral: the tensorflow package does not work with "
          "libedgetpu); https://github.com/google-coral/tflite/issues/64 (crashes with TF 2.10 and 2.12)"),
    Entry("tf2.13.1", "tflite_runtime", "2.13.1", "2.16", KNOWN_GOOD, "reported",
          f"{ISSUE_812} (comment of 2024-01-28 by the builder: works with tflite_runtime 2.13.1, 2.14.1, 2.15.0)"),
    Entry("tf2.17.1", "tflite_runtime", "2.17.1", "2.17.2", KNOWN_GOOD, "pinned",
          f"Frigate's image pins this pair: {FRIGATE}install_deps.sh (libedgetpu1-max 16.0tf2.17.1-1) and "
          f"{FRIGATE}requirements-wheels.txt (tflite_runtime 2.17.1, cp311)"),
)


@dataclass(frozen=True)
class Verdict:
    verdict: str
    entry: Entry | None = None

    def describe(self) -> str:
        if self.entry is None:
            return f"{UNTESTED} (not in the compatibility table: the probe decides)"
        return f"{self.verdict} ({self.entry.basis}: {self.entry.source})"


def lookup(build: RuntimeBuild, backend: str, version: str) -> Verdict:
    for entry in TABLE:
        if entry.matches(build, backend, version):
            return Verdict(entry.verdict, entry)
    return Verdict(UNTESTED)


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.11.0' -> (2, 11, 0); '2.5.0.post1' -> (2, 5, 0); a non-numeric tail is ignored."""
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


# -- the matched pairs to install ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MatchedPair:
    system: str  # OS release as /etc/os-release names it (VERSION_CODENAME)
    python: str  # 'major.minor'
    runtime: str  # the libedgetpu to install
    backend: str  # the interpreter to install
    install: str  # the commands
    source: str
    note: str = ""  # said after the commands, as a shell comment
    numpy: str = ""  # the NumPy the interpreter was built against


CORAL_APT = ("echo 'deb https://packages.cloud.google.com/apt coral-edgetpu-stable main' | sudo tee "
             "/etc/apt/sources.list.d/coral-edgetpu.list && curl https://packages.cloud.google.com/apt/doc/"
             "apt-key.gpg | sudo apt-key add - && sudo apt-get update && sudo apt-get install libedgetpu1-std")
FERANICK_DEB = ("https://github.com/feranick/libedgetpu/releases/download/16.0TF2.17.1-1/"
                "libedgetpu1-std_16.0tf2.17.1-1.bookworm_{arch}.deb")
TFLITE_2171 = {"aarch64": "https://github.com/feranick/TFlite-builds/releases/download/v2.17.1/"
                          "tflite_runtime-2.17.1-cp311-cp311-linux_aarch64.whl",
               "x86_64": "https://github.com/frigate-nvr/TFlite-builds/releases/download/v2.17.1/"
                         "tflite_runtime-2.17.1-cp311-cp311-linux_x86_64.whl"}
# sha256 of PyPI's tflite-runtime 2.11.0 wheels, computed here from the files PyPI serves
TFLITE_2110_SHA256 = {"aarch64": "e15ebb86a1039cbbe9132cb3497466e248d401b03b963b6d4045f732d1a66e2a",
                      "x86_64": "7ec1652408e33d0d4958fb830be00fd9829e2bf3b901e6a02b0b9186b2d2e61c"}

PAIRS: tuple[MatchedPair, ...] = (
    MatchedPair("bullseye", "3.9", "libedgetpu1-std 16.0 (Coral's apt repository)",
                "tflite-runtime 2.11.0 (PyPI, cp39 wheels for aarch64 and x86_64) with numpy<2",
                f"{CORAL_APT} && pip install 'tflite-runtime==2.11.0' 'numpy<2'", ISSUE_812,
                "then set backend = \"tflite_runtime\" under [model] in the config (the wheels' sha256 pins are in "
                "firmware_configs/README.md)", "numpy<2"),
    MatchedPair("bookworm", "3.11", "libedgetpu1-std (or -max) 16.0tf2.17.1-1, community build (feranick)",
                "tflite_runtime 2.17.1 cp311, community build, with numpy 1.26 (Frigate's pins)",
                f"wget {FERANICK_DEB} && sudo dpkg -i libedgetpu1-std_16.0tf2.17.1-1.bookworm_{{arch}}.deb && "
                "pip install {tflite_wheel} 'numpy==1.26.*'", FRIGATE,
                "then set backend = \"tflite_runtime\" under [model] in the config. These community builds come "
                "with no sha256 pins: check both files against their release pages before installing",
                "numpy==1.26.*"),
)


def matched_pair(codename: str, python: str) -> MatchedPair | None:
    return next((p for p in PAIRS if p.system == codename and p.python == python), None)


def install_line(codename: str, python: str, machine: str) -> str:
    """The commands that install a matched pair on this OS release, Python and machine, or what to do instead."""
    arch = {"aarch64": "arm64", "x86_64": "amd64"}.get(machine, machine)
    pair = matched_pair(codename, python)
    if pair is None or machine not in ("aarch64", "x86_64"):
        known = "; ".join(f"{p.system} + Python {p.python}" for p in PAIRS)
        return (f"no matched Edge TPU pair is known for {codename or 'this OS'} + Python {python} on {machine} "
                f"(known: {known}); the CPU model runs with ai-edge-litert, and the probe checks any pair you "
                "install (see firmware_configs/README.md)")
    commands = pair.install.format(arch=arch, tflite_wheel=TFLITE_2171.get(machine, ""))
    return f"{commands}  # {pair.note}" if pair.note else commands


def pip_requirements(codename: str, python: str, machine: str) -> list[str]:
    """The interpreter half of the matched pair as pip requirement lines (install them with --no-deps, after the
    pair's NumPy): hash-pinned where the hash was computed here (PyPI), a bare URL with a comment saying so
    where it could not be (GitHub). [] when no pair is known."""
    pair = matched_pair(codename, python)
    if pair is None or machine not in ("aarch64", "x86_64"):
        return []
    if pair.system == "bullseye":
        return ["tflite-runtime==2.11.0 " + " ".join(f"--hash=sha256:{h}" for h in TFLITE_2110_SHA256.values())]
    return ["# no sha256 pin for this community build: check the file against its release page before installing",
            f"tflite_runtime @ {TFLITE_2171[machine]}"]
