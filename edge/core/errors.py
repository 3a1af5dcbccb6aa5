"""The project's own errors. Each carries the exit status the command line uses for it."""

from pathlib import Path

from .files import read_file

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_CONFIG = 78  # EX_CONFIG: systemd units use RestartPreventExitStatus=78


class EdgeAudioError(Exception):
    """Base class: a problem the user can fix. The message is one line that says what and how."""

    exit_status = EXIT_UNEXPECTED


class InputError(EdgeAudioError):
    """Bad input: an audio file, a model, a label file, an argument."""

    exit_status = EXIT_BAD_INPUT


class ModelError(InputError):
    """A model file that cannot be used (corrupt, wrong shape, needs hardware that is absent)."""


class AudioFormatError(InputError):
    """An audio file that is not a usable WAV."""


class DelegateError(InputError):
    """A delegate that was asked for and cannot be provided."""


class ConfigError(EdgeAudioError):
    """A daemon configuration problem: the service must not restart in a loop."""

    exit_status = EXIT_CONFIG


def read_input_file(path: Path, error: type, what: str) -> bytes:
    """The bytes of a user-named regular file, or `error` with one line saying why not (edge.core.files)."""
    return read_file(path, what, error)
