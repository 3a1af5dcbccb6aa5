"""The command-line plumbing every entry point shares (`edge-audio`, `python -m tools`, the release steps): one
way to add a command (each with --verbose), one-line argument errors, progress lines on stderr, and the
project's errors, and a package that is not installed, turned into one line and an exit status. Standard library
only: the release steps use it from the wheel before NumPy is installed.

A command line is a table, command name -> module; each module has `add_parser(sub)`, which adds its subparser
with add_command() and sets its `func`. Only the module of the command being run is imported."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from importlib import import_module

from ..core.console import ENV_VERBOSE
from ..core.errors import EXIT_BAD_INPUT, EXIT_UNEXPECTED, EdgeAudioError

PROG = "edge-audio"
DEVICE_INSTALL = "pip install 'edge-audio[device]'"  # what a command line's packages come with (command_parser)


class OneLineParser(argparse.ArgumentParser):
    install = DEVICE_INSTALL  # the install that brings the packages its commands use

    def _get_formatter(self):
        # argparse sizes its help to shutil.get_terminal_size(), importing shutil (and through it bz2 and lzma,
        # 0.5 MB the daemon would keep) for every parser that has an argument; the same width, found here
        return self.formatter_class(prog=self.prog, width=terminal_columns() - 2)

    def error(self, message):  # one line, exit 2 (argparse would print the usage block first)
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)

    def format_help(self):
        """The help, with each description line wider than the terminal wrapped (a docstring's own layout and
        the examples below the options are kept as written)."""
        description, width = self.description, terminal_columns() - 2
        if description and any(len(line) > width for line in description.splitlines()):
            import textwrap
            self.description = "\n".join(textwrap.fill(line, width) if len(line) > width else line
                                         for line in description.splitlines())
        try:
            return super().format_help()
        finally:
            self.description = description


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


def say(message: str, prog: str = PROG) -> None:
    """One line on stderr, `prog: message`: progress, notes, warnings (stdout stays the command's output)."""
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


def sayer(prog: str):
    """say() with its prefix bound, for a command's progress lines: say = sayer("build")."""
    return functools.partial(say, prog=prog)


def add_command(sub, name: str, help_text: str, description: str, examples: list[str],
                after: str = "") -> argparse.ArgumentParser:
    """A subcommand in the house style: `help_text` in the command list, `description` above the options (as
    written), the examples below them under "examples:", then `after` (exit statuses, say). In an example,
    %(prog)s is the command as typed on this command line (edge-audio fetch, python -m tools fetch)."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) + (f"\n\n{after}" if after else "")
    p = sub.add_parser(name, help=help_text, description=description, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verbose", action="store_true",
                   help="also show what the runtimes print when all is well (TensorFlow Lite's start-up banner, "
                        "TensorFlow's logs)")
    return p


def command_parser(prog: str, description: str, commands: dict[str, str], command: str | None = None,
                   install: str = DEVICE_INSTALL) -> OneLineParser:
    """A command line from its table (name -> module with add_parser(sub)). With `command`, only that module is
    imported (running one command loads no other); without, every one (the command list, --help). `install`
    is what to run when a command needs a package that is not installed."""
    parser = OneLineParser(prog=prog, description=description)
    parser.install = install
    parser.add_argument("--verbose", dest="verbose_before", action="store_true",
                        help="the same as a command's own --verbose, given before its name")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, module in commands.items():
        if command is None or command == name:
            try:
                import_module(module).add_parser(sub)
            except ModuleNotFoundError as exc:
                if not_installed(exc) is None:
                    raise
                print(missing_package(exc, prog, name, install), file=sys.stderr, flush=True)
                sys.exit(EXIT_BAD_INPUT)
    return parser


def not_installed(exc: ModuleNotFoundError) -> str | None:
    """The package an import found missing, when it is a third-party one (an install to make); None when the
    missing module is the kit's own or the standard library's (a bug, not an install)."""
    top = (exc.name or "").partition(".")[0]
    if not top or top in ("edge", "tools") or top in getattr(sys, "stdlib_module_names", ()):
        return None
    return top


def missing_package(exc: ModuleNotFoundError, prog: str, command: str | None, install: str) -> str:
    """The one line for it: `prog: error: COMMAND needs the Python package 'X', which is not installed: INSTALL`."""
    return (f"{prog}: error: {command or 'this command'} needs the Python package '{not_installed(exc)}', which is "
            f"not installed: {install}")


def named_command(argv: list[str], commands: dict[str, str]) -> str | None:
    """The command an argument list runs (its first word that is not an option), when it is in the table."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in commands else None


def run(parser: argparse.ArgumentParser, argv: list[str] | None, prog: str = PROG) -> int:
    """Parse, dispatch to args.func, and turn the project's errors into one line and an exit status."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    if getattr(args, "verbose", False) or getattr(args, "verbose_before", False):
        os.environ[ENV_VERBOSE] = "1"  # read where the runtimes are loaded, here and in child processes
    try:
        return args.func(args)
    except ModuleNotFoundError as exc:
        if not_installed(exc) is None:
            return _unexpected(prog)
        print(missing_package(exc, prog, getattr(args, "command", None), getattr(parser, "install", DEVICE_INSTALL)),
              file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except EdgeAudioError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edge-audio classify ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        return _unexpected(prog)


def _unexpected(prog: str) -> int:
    """The exception being handled, with its traceback: a bug."""
    import traceback
    traceback.print_exc()
    print(f"{prog}: unexpected error (a bug: please report it with the traceback above)", file=sys.stderr)
    return EXIT_UNEXPECTED
