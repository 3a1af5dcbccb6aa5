"""The command-line plumbing every edge-audio entry point shares: one-line argument errors, and the project's
errors turned into one line and an exit status. Standard library only: the release steps use it from the wheel
before NumPy is installed."""

from __future__ import annotations

import argparse
import os
import sys

from ..core.errors import EXIT_BAD_INPUT, EXIT_UNEXPECTED, EdgeAudioError

PROG = "edge-audio"


class OneLineParser(argparse.ArgumentParser):
    def _get_formatter(self):
        # argparse sizes its help to shutil.get_terminal_size(), importing shutil (and through it bz2 and lzma,
        # 0.5 MB the daemon would keep) for every parser that has an argument; the same width, found here
        return self.formatter_class(prog=self.prog, width=terminal_columns() - 2)

    def error(self, message):  # one line, exit 2 (argparse would print the usage block first)
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def terminal_columns() -> int:
    """What shutil.get_terminal_size() reads: $COLUMNS, else the terminal on stdout, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


def run(parser: argparse.ArgumentParser, argv: list[str] | None, prog: str = PROG) -> int:
    """Parse, dispatch to args.func, and turn the project's errors into one line and an exit status."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except EdgeAudioError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edge-audio classify ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        import traceback
        traceback.print_exc()
        print(f"{prog}: unexpected error (a bug: please report it with the traceback above)", file=sys.stderr)
        return EXIT_UNEXPECTED
