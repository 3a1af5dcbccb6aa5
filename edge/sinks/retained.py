"""The retained topics the broker must hold (status, each watched label's state, the top class, Home Assistant's
discovery configs), what it has acknowledged, and what goes out next.

Any thread sets a topic's value; only the newest value of a topic is kept, so a state that changed ten times
during an outage is sent once, as it is now. After every (re)connection every topic is sent again, since the
broker may have lost them, at most `window` unacknowledged at a time: more go out as acknowledgements come back, so
the client library's queue never overflows however many labels are watched. A publish the client library cannot
queue now is tried again at the next pass; one the broker refuses is counted and tried again at the next
connection.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("edge.mqtt")

WINDOW = 16  # retained messages unacknowledged at once (the client library sends up to 20 at once, queues 64)


class RetainedSet:
    def __init__(self, window: int = WINDOW):
        self.window = window
        self._want: dict[str, str] = {}  # topic -> the value the broker must hold (insertion order: send order)
        self._dirty: dict[str, None] = {}  # topics to send (again), in order
        self._inflight: dict[int, tuple[str, str]] = {}  # message id -> (topic, value) sent, not acknowledged yet
        self.confirmed: dict[str, str] = {}  # topic -> value the broker acknowledged on this connection
        self.refused: dict[str, str] = {}  # topic -> why the broker refused it on this connection
        self.refusals = 0  # refused publishes, all connections
        self._lock = threading.Lock()

    # -- any thread ----------------------------------------------------------------------------------------------
    def set(self, topic: str, value: str) -> None:
        """The broker must hold `value` on `topic` (an empty value clears the topic, and is forgotten once done)."""
        with self._lock:
            if self._want.get(topic) == value:
                return  # queued, in flight or acknowledged already
            self._want[topic] = value
            self._dirty[topic] = None

    def value(self, topic: str) -> str | None:
        return self._want.get(topic)

    def current(self) -> dict[str, str]:
        """topic -> value the broker must hold (cleared topics left out)."""
        with self._lock:
            return {t: v for t, v in self._want.items() if v}

    def settled(self) -> bool:
        """Everything was sent and acknowledged (or refused) on this connection."""
        with self._lock:
            return not self._dirty and not self._inflight

    def holds(self, topic: str, value: str) -> bool:
        """The broker acknowledged `value` on `topic` on this connection."""
        with self._lock:
            return self.confirmed.get(topic) == value

    # -- the network thread --------------------------------------------------------------------------------------
    def touch(self, topics) -> None:
        """Send these topics again (Home Assistant restarted and asks for its configs)."""
        with self._lock:
            for topic in topics:
                if topic in self._want:
                    self._dirty[topic] = None

    def connected(self) -> None:
        """A new connection: nothing is in flight on it and every topic is sent again, in order."""
        with self._lock:
            self._inflight.clear()
            self.confirmed.clear()
            self.refused.clear()
            self._dirty = dict.fromkeys(self._want)

    def pump(self, publish, ok) -> int:
        """Hand the client `publish(topic, value)` what waits, while fewer than `window` are unacknowledged; stop at
        the first result other than `ok` (queue full, no connection): the topic stays to send. Returns how many went
        out."""
        sent = 0
        while True:
            with self._lock:
                if not self._dirty or len(self._inflight) >= self.window:
                    return sent
                topic = next(iter(self._dirty))
                value = self._want[topic]
                del self._dirty[topic]
            try:
                info = publish(topic, value)
            except (ValueError, UnicodeError) as exc:  # a topic the client library cannot send: no try would work
                self._cannot_send(topic, str(exc))
                continue
            with self._lock:
                if info.rc != ok:
                    self._dirty.setdefault(topic, None)
                    return sent
                self._inflight[info.mid] = (topic, value)
            sent += 1

    def _cannot_send(self, topic: str, why: str) -> None:
        with self._lock:
            self.refusals += 1
            if topic not in self.refused:
                log.error("MQTT: cannot send the retained topic %r: %s", topic, why)
            self.refused[topic] = f"the client library cannot send it ({why})"

    def acknowledged(self, mid: int, refusal: str = "") -> tuple[str, str] | None:
        """The broker answered message `mid`: (topic, value) when it was one of these (else None). `refusal`: the
        reason code when the broker refused it (counted; sent again at the next connection)."""
        with self._lock:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                return None
            topic, value = entry
            if refusal:
                self.refusals += 1
                self.refused[topic] = refusal
                return entry
            self.refused.pop(topic, None)
            self.confirmed[topic] = value
            if not value and self._want.get(topic) == "" and topic not in self._dirty:
                del self._want[topic]  # cleared for good: not sent again at the next connection
                del self.confirmed[topic]
            return entry
