"""`python -m tools COMMAND`: host-side model work, benches and deployment. Each command's parser lives with the
command (its module's add_parser); this is the table of them. Running one command imports its module only."""

from __future__ import annotations

import argparse
import sys

from edge.app.command import command_parser, named_command, run

PROG = "python -m tools"
INSTALL = "the host tools' packages come with make venv (or pip install -e '.[tools]')"
COMMANDS = {  # name -> the module that adds its parser (the order of the command list)
    "fetch": "edge.app.fetch",
    "deploy": "tools.deploy.host",
    "wheelhouse": "tools.deploy.wheelhouse",
    "demo": "tools.bench.demo",
    "build": "tools.model.build",
    "check": "tools.model.check",
    "compile": "tools.model.compile",
    "evaluate": "tools.eval.evaluate",
    "inspect": "tools.model.report",
    "speed": "tools.eval.speed",
    "train-head": "tools.heads.train",
    "daemon-bench": "tools.bench.daemon",
    "recovery-bench": "tools.bench.recovery",
    "streams-bench": "tools.bench.streams",
    "clips-bench": "tools.bench.clips",
    "recorder-bench": "tools.bench.recorder",
    "onset": "tools.bench.onset",
    "bench-targets": "tools.bench.targets",
    "peers": "tools.bench.peers.side_by_side",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line with only `command`'s parser, or with every command's (the command list, --help)."""
    return command_parser(PROG, "Host tools for the edge audio kit.", COMMANDS, command, INSTALL)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return run(build_parser(named_command(args, COMMANDS)), argv, PROG)
