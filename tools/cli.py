"""`python -m tools COMMAND`: host-side model work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.cli import OneLineParser, run

PROG = "python -m tools"


def cmd_fetch(args) -> int:
    from edge import fetch
    from edge.classifier import default_bundle_path

    mirror = Path(args.mirror) if args.mirror else fetch.mirror_root()
    where = f"offline mirror {mirror}" if mirror else "the official sources"
    if args.what == "bundle":
        dest = Path(args.dest) if args.dest else default_bundle_path()
        print(f"installing the default model bundle (Coral's split YAMNet) from {where} into {dest}",
              file=sys.stderr)
        fetch.install_default_bundle(dest, mirror)
        print(dest)
    else:
        assets = fetch.SAMPLES if args.what == "samples" else (fetch.YAMNET_WAVEFORM, fetch.CLASS_MAP)
        dest = Path(args.dest) if args.dest else Path("out/audio" if args.what == "samples" else "out/models")
        print(f"fetching {args.what} from {where} into {dest}", file=sys.stderr)
        for asset in assets:
            print(fetch.fetch(asset, dest, mirror))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Host tools for the edge audio kit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    p = sub.add_parser("fetch", help="install the default model bundle or sample audio (sha256-pinned)",
                       description="Download pinned assets from their official sources, or copy them from an "
                                   "offline mirror ($EDGE_AUDIO_ASSETS or --mirror). Every file is checked "
                                   "against its sha256 before it is installed.",
                       epilog="examples:\n  python -m tools fetch bundle\n"
                              "  EDGE_AUDIO_ASSETS=../shared python -m tools fetch samples --dest out/audio",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("bundle", "waveform", "samples"), nargs="?", default="bundle",
                   help="bundle: the default model bundle (default); waveform: Google's published YAMNet "
                        "(waveform in) and its class map, the source for 'build'; samples: demo recordings")
    p.add_argument("--dest", metavar="DIR", help="where to put it (bundle default: ~/.local/share/edge-audio/"
                                                  "models/yamnet-coral or $EDGE_AUDIO_HOME/models/yamnet-coral)")
    p.add_argument("--mirror", metavar="DIR", help="offline mirror laid out like the asset share (models/, audio/)")
    p.set_defaults(func=cmd_fetch)
    return parser


def main(argv=None) -> int:
    return run(build_parser(), argv, PROG)
