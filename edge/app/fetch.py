"""`edge-audio fetch` (and `python -m tools fetch`, the same code): install the default model bundle, the published
waveform YAMNet or the sample recordings, sha256-pinned, from their official sources or an offline mirror."""

from __future__ import annotations

import sys
from pathlib import Path

from ..model import assets
from ..model.bundle import default_bundle_path
from .command import add_command

WHAT = ("bundle", *assets.SOURCES, "samples", "edgetpu-runtime")


def cmd_fetch(args) -> int:
    if args.what == "edgetpu-runtime":
        return _edgetpu_runtime(Path(args.dest or "out/edgetpu-runtime"))
    mirror = Path(args.mirror) if args.mirror else assets.mirror_root()
    where = f"offline mirror {mirror}" if mirror else "the official sources"
    if args.what == "bundle":
        dest = Path(args.dest) if args.dest else default_bundle_path()
        print(f"installing the default model bundle (Coral's split YAMNet + self-test clip) from {where} into "
              f"{dest}", file=sys.stderr)
        assets.install_default_bundle(dest, mirror)
        print(dest)
        return 0
    wanted = assets.SAMPLES if args.what == "samples" else (assets.SOURCES[args.what], assets.CLASS_MAP)
    dest = Path(args.dest) if args.dest else Path("out/audio" if args.what == "samples" else "out/models")
    print(f"fetching {args.what} from {where} into {dest}", file=sys.stderr)
    for asset in wanted:
        print(assets.fetch(asset, dest, mirror))
    return 0


def _edgetpu_runtime(dest: Path) -> int:
    """The matched Edge TPU runtime pair for this OS, Python and machine: the pip requirements (hash-pinned where
    the hash is known) and the install line, written to dest; nothing is installed."""
    import platform

    from ..core.errors import InputError
    from ..model import compat, edgetpu
    codename = edgetpu.os_release().get("VERSION_CODENAME", "")
    python, machine = ".".join(platform.python_version_tuple()[:2]), platform.machine()
    lines = compat.pip_requirements(codename, python, machine)
    line = compat.install_line(codename, python, machine)
    if not lines:
        raise InputError(line)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "requirements-edgetpu.txt").write_text("\n".join(lines) + "\n")
    (dest / "install.txt").write_text(line + "\n")
    pinned = "--require-hashes " if any("--hash=" in l for l in lines) else ""
    numpy = compat.matched_pair(codename, python).numpy
    print(f"matched Edge TPU pair for {codename} + Python {python} on {machine} (firmware_configs/README.md):\n"
          f"  1. the runtime library: {line.split(' && pip install')[0]}\n"
          f"  2. the interpreter:     pip install '{numpy}' && pip install --no-deps {pinned}"
          f"-r {dest / 'requirements-edgetpu.txt'}\n"
          f"  3. backend = \"tflite_runtime\" under [model] in the config")
    return 0


def add_parser(sub) -> None:
    p = add_command(sub, "fetch", "install the default model bundle or sample audio (sha256-pinned)",
                    "Download pinned assets from their official sources, or copy them from an offline mirror "
                    "($EDGE_AUDIO_ASSETS or --mirror). Every file is checked against its sha256 before it is "
                    "installed.",
                    ["%(prog)s bundle", "%(prog)s bundle --mirror /media/usb/edge-audio-assets",
                     "EDGE_AUDIO_ASSETS=../shared %(prog)s samples --dest out/audio"])
    p.add_argument("what", choices=WHAT, nargs="?", default="bundle",
                   help="bundle: the default model bundle (default); coral, waveform, keras: a published YAMNet "
                        "(Coral's int8 twin, the waveform-input TFLite model, the Keras checkpoint yamnet.h5) and "
                        "the class map, sources for 'python -m tools build'; samples: demo recordings; "
                        "edgetpu-runtime: the matched Edge TPU runtime pair for this OS and Python (pip "
                        "requirements, hash-pinned where the hash is known, and the runtime's install line)")
    p.add_argument("--dest", metavar="DIR", help="where to put it (bundle default: $EDGE_AUDIO_HOME/models/"
                                                  "yamnet-coral, else ~/.local/share/edge-audio/models/yamnet-coral)")
    p.add_argument("--mirror", metavar="DIR", help="offline mirror laid out like the asset share (models/, audio/)")
    p.set_defaults(func=cmd_fetch)
