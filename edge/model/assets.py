"""Fetching models and sample audio with sha256 pins, from the official sources or an offline mirror.

The mirror is a folder laid out like the project's asset share (models/, models/coral/, audio/), named by
EDGE_AUDIO_ASSETS: set it on air-gapped machines and in CI; nothing is downloaded then.

urllib.request (with http.client, email and ssl: ~5 MB resident), tarfile and
tempfile are imported by the functions that download, verify, extract and write: the command line imports this
module to list what `fetch` offers, and the daemon must not carry a download stack it never uses.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .bundle import write_manifest
from ..core.console import Progress
from ..core.errors import InputError
from ..core.files import replace_file, sha256_hex
from ..core.frontend import FrontEndParams

ENV_MIRROR = "EDGE_AUDIO_ASSETS"
CORAL = "https://github.com/google-coral/coralmicro/raw/main/models/"
YAMNET_CLASS_MAP = ("https://raw.githubusercontent.com/tensorflow/models/master/research/audioset/yamnet/"
                    "yamnet_class_map.csv")
AUDIOSET = "https://storage.googleapis.com/audioset/"


@dataclass(frozen=True)
class Asset:
    name: str  # file name once installed
    url: str
    sha256: str  # of the file itself (for an archive: of the member extracted)
    mirror: str  # path inside an EDGE_AUDIO_ASSETS mirror
    member: str = ""  # for a .tar.gz download: the member to extract


CORAL_EDGETPU = Asset("yamnet_spectra_in_edgetpu.tflite", CORAL + "yamnet_spectra_in_edgetpu.tflite",
                      "b6360df2ae0bbc3c8a1d7e608f9f763c3dfe590df8447f1fab7736ad56897f6e",
                      "models/coral/yamnet_spectra_in_edgetpu.tflite")
CORAL_CPU = Asset("yamnet_spectra_in.tflite", CORAL + "yamnet_spectra_in.tflite",
                  "0a266465c46718f3fcc4137366be82882a8c93bfcc4f0278581a11d11dddcdf9",
                  "models/coral/yamnet_spectra_in.tflite")
CLASS_MAP = Asset("yamnet_class_map.csv", YAMNET_CLASS_MAP,
                  "cdf24d193e196d9e95912a2667051ae203e92a2ba09449218ccb40ef787c6df2", "models/yamnet_class_map.csv")
YAMNET_WAVEFORM = Asset("yamnet_classification.tflite",
                        "https://www.kaggle.com/api/v1/models/google/yamnet/tfLite/classification-tflite/1/download",
                        "687f226c147a2caab4706fbbab5e9cecb14b9a368264bf61108078b1fddf68f5",
                        "models/yamnet_classification.tflite", member="1.tflite")
# The original Keras checkpoint (float weights): one of the sources `python -m tools build` reads.
YAMNET_KERAS = Asset("yamnet.h5", AUDIOSET + "yamnet.h5",
                     "13c3308955bbfaef262f175ac9c40e47b134573a93984f009220dd7cc12a1744", "models/yamnet.h5")
SAMPLES = (
    Asset("miaow_16k.wav", AUDIOSET + "miaow_16k.wav",
          "f2a00c3a3e7596f1541c4cbd59d6034a674b76ae9c53c8784882345c044da558", "audio/miaow_16k.wav"),
    Asset("speech_whistling2.wav", AUDIOSET + "speech_whistling2.wav",
          "1f9db96a719cbe6dd32073d05173d06e25e71050539552f2ea4a0a26e2197e33", "audio/speech_whistling2.wav"),
)
# the published YAMNet forms by name (`fetch NAME`, `python -m tools build --source NAME`)
SOURCES = {"coral": CORAL_CPU, "waveform": YAMNET_WAVEFORM, "keras": YAMNET_KERAS}
SELFTEST_CLIP = SAMPLES[0]  # miaow_16k.wav: Cat is the int8 twin's top class on it (0.73 here)
ASSETS = {a.name: a for a in (CORAL_EDGETPU, CORAL_CPU, CLASS_MAP, YAMNET_WAVEFORM, YAMNET_KERAS, *SAMPLES)}


def mirror_root() -> Path | None:
    value = os.environ.get(ENV_MIRROR)
    return Path(value).expanduser().resolve() if value else None


def _download(url: str, label: str, timeout_s: float = 30.0) -> bytes:
    import urllib.error
    import urllib.request
    request = urllib.request.Request(url, headers={"User-Agent": "edge-audio"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            total = int(response.headers.get("Content-Length") or 0)
            buf = io.BytesIO()
            done = 0
            with Progress(total) as progress:
                while block := response.read(1 << 16):
                    buf.write(block)
                    done += len(block)
                    if total:
                        progress.show(done, f"  {label}: {100 * done // total:3d}% of {total >> 10} KiB")
            return buf.getvalue()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"cannot download {url} ({reason}); offline? set {ENV_MIRROR} to a folder that mirrors "
                         "the assets (models/, audio/)") from None


def fetch(asset: Asset, dest_dir: Path, mirror: Path | None, quiet: bool = False) -> Path:
    """Put `asset` in dest_dir, verified against its sha256: copied from `mirror` when one is given (see
    mirror_root()), else downloaded from its official source."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / asset.name
    if dest.is_file() and sha256_hex(dest.read_bytes()) == asset.sha256:
        return dest
    if mirror is not None:
        source = mirror / asset.mirror
        if not source.is_file():
            raise InputError(f"{source}: not in the offline mirror {ENV_MIRROR}={mirror}")
        data = source.read_bytes()
        origin = str(source)
    else:
        data = _download(asset.url, asset.name)
        origin = asset.url
        if asset.member:
            data = _extract(data, asset.member, asset.url)
    digest = sha256_hex(data)
    if digest != asset.sha256:
        raise InputError(f"{asset.name} from {origin} has sha256 {digest[:16]}..., expected {asset.sha256[:16]}...; "
                         "refusing to install it")
    replace_file(dest, data)  # readable by the service user (a temporary file's 0600 would not be)
    if not quiet:
        print(f"  {asset.name}: ok ({len(data) >> 10} KiB, sha256 verified, from {origin})", file=sys.stderr)
    return dest


def _extract(archive: bytes, member: str, url: str) -> bytes:
    import tarfile
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            f = tar.extractfile(member)
            if f is None:
                raise KeyError(member)
            return f.read()
    except (tarfile.TarError, KeyError) as exc:
        raise InputError(f"{url}: the download is not the expected archive ({exc})") from None


def install_default_bundle(dest: Path, mirror: Path | None) -> Path:
    """Coral's split YAMNet (Edge TPU model + int8 CPU twin + class map) as a bundle at `dest`, with a known clip
    (miaow_16k.wav, expected class Cat) that `edge-audio selftest` classifies before a release goes live."""
    import tempfile
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=dest.parent))
    try:
        for asset in (CORAL_EDGETPU, CORAL_CPU, CLASS_MAP, SELFTEST_CLIP):
            cached = dest / asset.name
            if cached.is_file():
                shutil.copy2(cached, staging / asset.name)
            fetch(asset, staging, mirror)
        write_manifest(staging, {
            "name": "yamnet-coral",
            "description": "Coral's split YAMNet: log-mel on the CPU, the network as one Edge TPU op; int8 CPU twin",
            "input_kind": "logmel_patch",
            "frontend": FrontEndParams().to_dict(),
            "models": {"edgetpu": CORAL_EDGETPU.name, "cpu": CORAL_CPU.name},
            "labels": CLASS_MAP.name,
            "quantization": {"input": "float32 (QUANTIZE inside the model)", "output": "float32 (DEQUANTIZE inside)"},
            "compiler": None,
            "source": {"name": "google-coral/coralmicro yamnet_spectra_in",
                       "urls": [CORAL_EDGETPU.url, CORAL_CPU.url, CLASS_MAP.url]},
            "selftest": {"clip": SELFTEST_CLIP.name, "expected": "Cat"},
        })
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest
