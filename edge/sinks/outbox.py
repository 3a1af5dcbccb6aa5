"""The event outbox: bounded, ordered, thread-safe, optionally kept in a file across restarts.

The audio loop appends; the network thread sends the head and removes it once the broker acknowledged it.
A full outbox drops the oldest (or the newest) event and counts it.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from dataclasses import dataclass

log = logging.getLogger("edge.sinks")


@dataclass
class Message:
    topic: str
    payload: str
    qos: int = 0
    retain: bool = False


class Outbox:
    def __init__(self, max_items: int, policy: str = "drop_oldest", path: str = ""):
        self.max_items = max_items
        self.policy = policy  # "drop_oldest" | "drop_newest"
        self.path = path  # "" = memory only
        self.dropped = 0
        self._items: collections.deque[Message] = collections.deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        with self._lock:
            return iter(list(self._items))

    def append(self, msg: Message) -> None:
        with self._lock:
            if len(self._items) >= self.max_items:
                self.dropped += 1
                if self.policy == "drop_newest":
                    return
                self._items.popleft()
            self._items.append(msg)

    def head(self) -> Message | None:
        with self._lock:
            return self._items[0] if self._items else None

    def remove_head(self, msg: Message) -> bool:
        """Remove `msg` if it is still the head (it may have been dropped meanwhile)."""
        with self._lock:
            if self._items and self._items[0] is msg:
                self._items.popleft()
                return True
            return False

    # -- across restarts -----------------------------------------------------------------------------------------
    def save(self) -> None:
        if not self.path:
            return
        with self._lock:
            pending = list(self._items)
        try:
            if pending:
                tmp = f"{self.path}.tmp"
                with open(tmp, "w") as f:
                    for m in pending:
                        f.write(json.dumps({"topic": m.topic, "payload": m.payload}) + "\n")
                os.replace(tmp, self.path)
                log.info("MQTT: %d undelivered event(s) kept in %s for the next start", len(pending), self.path)
            elif os.path.exists(self.path):
                os.remove(self.path)
        except OSError as exc:
            log.error("MQTT: cannot write the outbox file %s (%s): %d event(s) lost", self.path, exc.strerror,
                      len(pending))

    def load(self) -> int:
        """Events a previous run kept; returns how many were read."""
        if not self.path or not os.path.exists(self.path):
            return 0
        loaded = 0
        try:
            with open(self.path) as f:
                for line in f:
                    item = json.loads(line)
                    self._items.append(Message(item["topic"], item["payload"], qos=1))
                    loaded += 1
        except (OSError, ValueError, KeyError) as exc:
            log.error("MQTT: outbox file %s is unreadable (%s); %d event(s) recovered", self.path, exc, loaded)
        while len(self._items) > self.max_items:
            self._items.popleft()
            self.dropped += 1
        if loaded:
            log.info("MQTT: %d event(s) from the previous run waiting in the outbox", loaded)
        return loaded
