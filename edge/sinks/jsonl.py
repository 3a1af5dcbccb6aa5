"""Events as JSON lines, one per event, exactly the MQTT event payload: to a file (appended, flushed per event)
or to standard output. The daemon's sink when no other is enabled, and a file log beside MQTT."""

from __future__ import annotations

import sys

from ..core.errors import ConfigError
from ..core.events import Event
from .base import Sink


class JsonLinesSink(Sink):
    def __init__(self, path: str = "", stream=None):
        self.path = path
        self._stream = stream
        self.written = 0

    def start(self) -> None:
        if self._stream is None:
            if not self.path:
                self._stream = sys.stdout
            else:
                try:
                    self._stream = open(self.path, "a", encoding="utf-8")
                except OSError as exc:
                    raise ConfigError(f"jsonl.path {self.path}: cannot open it ({exc.strerror})") from None

    def check(self, warn) -> str:
        if self._stream is not None or not self.path:
            return "events as JSON lines on standard output"
        try:
            with open(self.path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise ConfigError(f"jsonl.path {self.path}: cannot open it ({exc.strerror})") from None
        return f"events as JSON lines appended to {self.path}"

    def publish_event(self, event: Event) -> None:
        if self._stream is None:
            self.start()
        print(event.to_json(), file=self._stream, flush=True)
        self.written += 1

    def stop(self, timeout_s: float) -> None:
        if self._stream is not None and self.path:
            self._stream.close()
            self._stream = None
