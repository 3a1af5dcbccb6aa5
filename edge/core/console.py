"""What the kit writes to stderr besides its results: progress lines that read well in a terminal and in a log,
and the native runtime's start-up banners kept off it.

    verbose()                   --verbose (EDGE_AUDIO_VERBOSE=1) or debug logging: show everything
    Progress(total)             a line redrawn in place on a terminal; plain lines, a few of them, anywhere else
    native_stderr_filtered(..)  file descriptor 2 through a filter while a block runs (C++ libraries write there)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

ENV_VERBOSE = "EDGE_AUDIO_VERBOSE"
STEPS = 10  # a plain progress line at each tenth of the way ...
EVERY_S = 5.0  # ... or after this many seconds without one


def verbose() -> bool:
    """True with --verbose (which sets EDGE_AUDIO_VERBOSE=1, so child processes inherit it) or when the kit's
    loggers log at debug level (the daemon's --log-level debug)."""
    if os.environ.get(ENV_VERBOSE) == "1":
        return True
    logging = sys.modules.get("logging")  # not configured when not imported
    return logging is not None and logging.getLogger("edge").isEnabledFor(logging.DEBUG)


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or closed
        return False


class Progress:
    """Progress of a long step on stderr (or `stream`), one call to show() per step done. On a terminal the line
    is redrawn in place; anywhere else (a log, a pipe, a test) whole lines are printed: the first, one at each
    tenth of the way or after EVERY_S seconds without one, and always the last. Use it as a context manager, or
    call end() when the step is over."""

    def __init__(self, total: int, stream=None, every_s: float = EVERY_S, clock=time.monotonic):
        self.total = max(1, int(total))
        self.stream = stream if stream is not None else sys.stderr
        self.live = is_terminal(self.stream)
        self.every_s = every_s
        self.clock = clock
        self._width = 0  # of the line drawn in place
        self._step = -1  # the tenth of the way the last plain line was printed at
        self._last_at = 0.0
        self._pending = ""  # the latest line not printed (plain lines only)

    def show(self, done: int, line: str) -> None:
        """Report `done` of total, described by `line` (the whole line, without an end of line)."""
        if self.live:
            self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
            self.stream.flush()
            self._width = len(line)
            return
        step, now = min(STEPS, done * STEPS // self.total), self.clock()
        if done >= self.total or step > self._step or now - self._last_at >= self.every_s:
            self._print(line, now)
            self._step = step
        else:
            self._pending = line

    def end(self) -> None:
        """Finish the line drawn in place, or print the latest state if it was not printed."""
        if self.live and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
        elif self._pending:
            self._print(self._pending, self.clock())

    def _print(self, line: str, now: float) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
        self._last_at, self._pending = now, ""

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.end()


@contextmanager
def native_stderr_filtered(drop: tuple[str, ...]):
    """While the block runs, file descriptor 2 goes through a pipe: lines that start with one of `drop` are left
    out, every other line reaches the real stderr as it comes (an error from the library, another thread's
    message). With verbose() nothing is filtered. Python's own sys.stderr writes to the same descriptor and is
    flushed at both ends."""
    if verbose():
        yield
        return
    _flush()
    try:
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:  # no stderr at all: nothing to keep clean
        yield
        return
    os.dup2(write_end, 2)
    os.close(write_end)
    forward = threading.Thread(target=_forward, args=(read_end, saved, drop), name="stderr-filter", daemon=True)
    forward.start()
    try:
        yield
    finally:
        _flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the forwarder reads to its end and stops
        forward.join(1.0)
        if not forward.is_alive():  # (a child started meanwhile holds the pipe open: it keeps forwarding)
            os.close(saved)


def _flush() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass


def _forward(read_end: int, out: int, drop: tuple[str, ...]) -> None:
    tail = b""
    keys = tuple(d.encode() for d in drop)
    try:
        while chunk := os.read(read_end, 65536):
            *lines, tail = (tail + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not line.startswith(keys))
            if kept:
                _write(out, kept)
        if tail and not tail.startswith(keys):
            _write(out, tail)
    except OSError:
        pass
    finally:
        os.close(read_end)


def _write(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
