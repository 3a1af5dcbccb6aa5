"""The `edge-audio` command line: a thin layer over the runtime. Errors the user can fix print one line.

Each command's parser lives with the command (its module's add_parser); this is the table of them. Running one
command imports its module only: the daemon's `run` never loads bench, fetch or release."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from .command import PROG, command_parser, named_command, run

COMMANDS = {  # name -> the module that adds its parser (the order of the command list)
    "classify": "edge.app.classify",
    "doctor": "edge.app.doctor",
    "run": "edge.app.run",
    "calibrate": "edge.app.calibration.calibrate",
    "monitor": "edge.app.monitor",
    "clips": "edge.app.clips",
    "bench": "edge.app.bench",
    "selftest": "edge.app.selftest",
    "fetch": "edge.app.fetch",
    "release": "edge.app.release.parser",
    "profiles": "edge.app.profiles",
    "recorder": "edge.app.recorder.command",
}
DESCRIPTION = "Continuous audio event classification (YAMNet) on Coral Edge TPU and Raspberry Pi boards."


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line with only `command`'s parser, or with every command's (the command list, --help)."""
    parser = command_parser(PROG, DESCRIPTION, COMMANDS, command)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return run(build_parser(named_command(args, COMMANDS)), argv)


if __name__ == "__main__":
    sys.exit(main())
