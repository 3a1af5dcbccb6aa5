"""Events as JSON lines, one per event, exactly the MQTT event payload: to a file (appended, written whole per
event) or to standard output. The daemon's sink when no other is enabled, and a file log beside MQTT.

A line that cannot be written (a full disk, a closed pipe) is dropped and counted, never raised: the audio loop
goes on, the first failure is logged once, and writing resumes by itself when the file takes lines again."""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys

from ..core.errors import ConfigError
from ..core.events import Event
from .base import Sink

log = logging.getLogger("edge.sinks.jsonl")


class JsonLinesSink(Sink):
    def __init__(self, path: str = "", stream=None):
        self.path = path
        self._stream = stream
        self._file = None  # the unbuffered file when `path` is set: a line is written whole or reported as not
        self.written = 0
        self.dropped = 0  # lines that could not be written
        self.problem = ""  # why the last line could not be written ("" once lines are written again)
        self._torn = False  # a line was cut short on the way: the next one starts on a fresh line

    @property
    def where(self) -> str:
        return f"jsonl.path {self.path}" if self.path else "standard output"

    def start(self) -> None:
        if self._stream is None and self._file is None:
            if not self.path:
                self._stream = sys.stdout
            else:
                self._file = self._open("ab", buffering=0)

    def check(self, warn) -> str:
        if self._stream is not None or self._file is not None or not self.path:
            return "events as JSON lines on standard output"
        self._open("a", encoding="utf-8").close()
        return f"events as JSON lines appended to {self.path}"

    def _open(self, mode: str, **kwargs):
        """The file, or ConfigError: a FIFO or a socket is refused, its open and every line would wait for a
        reader, and the audio loop with them (leave jsonl.path empty and pipe standard output instead)."""
        try:
            kind = os.stat(self.path).st_mode
            if stat.S_ISFIFO(kind) or stat.S_ISSOCK(kind):
                raise ConfigError(f"jsonl.path {self.path}: a FIFO or socket, whose open and writes wait for a "
                                  "reader; leave jsonl.path empty and pipe standard output instead")
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ConfigError(f"jsonl.path {self.path}: cannot open it ({exc.strerror})") from None
        try:
            return open(self.path, mode, **kwargs)
        except OSError as exc:
            raise ConfigError(f"jsonl.path {self.path}: cannot open it ({exc.strerror})") from None

    def publish_event(self, event: Event) -> None:
        if self._stream is None and self._file is None:
            self.start()
        line = event.to_json() + "\n"
        try:
            if self._file is not None:
                self._write_whole(line)
            else:
                self._stream.write(line)
                self._stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: a stream closed under us
            self._dropped(exc)
            return
        if self.problem:
            log.warning("%s: writing event lines again, %d dropped", self.where, self.dropped)
            self.problem = ""
        self.written += 1

    def _write_whole(self, line: str) -> None:
        """One line to the file, every byte or OSError. A line cut short (the disk filled on the way) is ended by
        the next one's leading line break, so a reader loses that line and no other."""
        data = memoryview((("\n" if self._torn else "") + line).encode())
        sent = 0
        while sent < len(data):
            try:
                n = self._file.write(data[sent:])
                if not n:
                    raise OSError(errno.EIO, "the file took no bytes")
            except OSError:
                self._torn = self._torn or sent > 0
                raise
            sent += n
        self._torn = False

    def _dropped(self, exc: Exception) -> None:
        self.dropped += 1
        why = getattr(exc, "strerror", None) or str(exc)
        if not self.problem:  # once per failure, not once per event
            log.error("%s: cannot write event lines (%s): dropping them, counted in the metrics, until it can",
                      self.where, why)
        self.problem = why

    def health(self) -> dict:
        return {"jsonl_written": self.written, "jsonl_dropped": self.dropped, "jsonl_problem": self.problem}

    def stop(self, timeout_s: float) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
