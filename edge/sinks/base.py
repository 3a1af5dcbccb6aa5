"""The Sink interface: everything the daemon publishes goes through these calls.

The audio loop calls them once per window or event, so none may block: a sink that talks to a network hands
the work to its own thread (see mqtt.py). Methods a sink does not carry are no-ops here.

A daemon with [[sources]] says which source each call is about: an event carries it (Event.source), the other calls
take `source` (the source's id; "" for a config with [audio] alone, and for the device's own metrics).
"""

from __future__ import annotations

from ..core.events import Event


class Sink:
    """Events (the payload contract in edge/core/events.py), retained state, the top class, the score stream,
    metrics, each source's status, and health counters that the daemon merges into its metrics."""

    def start(self) -> None:
        """Before the first window: connect, open files, load what a previous run left."""

    def stop(self, timeout_s: float) -> None:
        """At shutdown: deliver or keep what is pending, within `timeout_s`."""

    def check(self, warn) -> str:
        """Selftest, before a release goes live: could start() work? Raise ConfigError for what would stop the
        daemon, hand anything it would survive degraded to `warn`, and return one line on what was checked. Opens
        nothing for long and sends nothing (the running service may hold the same files)."""
        return type(self).__name__

    def publish_event(self, event: Event) -> None:
        raise NotImplementedError

    def publish_clip(self, record: dict, path: str) -> None:
        """A clip was kept (`record`: its record, edge/sinks/clipstore.py; `path`: its audio file), called right
        after the end event that carries it. Reads no file here: a sink that sends the audio reads it later, on
        its own thread."""

    def set_state(self, label: str, on: bool, source: str = "") -> None:
        """A label the source watches went on (an event started) or off."""

    def set_top(self, label: str, source: str = "") -> None:
        """The source's top class changed."""

    def publish_scores(self, payload: dict, source: str = "") -> None:
        """A rate-limited top-k score message of the source (only when the sink asked for scores)."""

    def publish_metrics(self, payload: dict, source: str = "") -> None:
        """The daemon's periodic metrics (source ""), or a named source's own part of them."""

    def set_source_status(self, source: str, online: bool) -> None:
        """A named source delivers audio (again), or it was lost."""

    def flush(self) -> None:
        """The audio loop is done with what arrived and goes to sleep: hand over what the calls above queued. A
        sink with its own thread wakes it here, once, instead of at every call, so the two do not compete for
        the interpreter while the loop works."""

    def health(self) -> dict:
        """Counters for the metrics payload (connected, queue depth, delivered, dropped...). A non-empty
        "failed" says the sink stopped working for good: the daemon then exits so that systemd restarts it."""
        return {}

    def failure(self) -> str:
        """Why the sink stopped working for good ("" while it works): the daemon then exits 1 and systemd starts
        a fresh process."""
        return ""

    def recovered_open_events(self) -> tuple[list[dict], float]:
        """Start payloads of events a previous run left open, and when that run was last known alive (unix s)."""
        return [], 0.0


class FanOut(Sink):
    """Several sinks as one: each call goes to every sink, health counters are merged."""

    def __init__(self, sinks: list[Sink]):
        self.sinks = sinks

    def start(self) -> None:
        for s in self.sinks:
            s.start()

    def check(self, warn) -> str:
        return "; ".join(s.check(warn) for s in self.sinks)

    def stop(self, timeout_s: float) -> None:
        for s in self.sinks:
            s.stop(timeout_s / len(self.sinks))

    def publish_event(self, event: Event) -> None:
        for s in self.sinks:
            s.publish_event(event)

    def publish_clip(self, record: dict, path: str) -> None:
        for s in self.sinks:
            s.publish_clip(record, path)

    def set_state(self, label: str, on: bool, source: str = "") -> None:
        for s in self.sinks:
            s.set_state(label, on, source=source)

    def set_top(self, label: str, source: str = "") -> None:
        for s in self.sinks:
            s.set_top(label, source=source)

    def publish_scores(self, payload: dict, source: str = "") -> None:
        for s in self.sinks:
            s.publish_scores(payload, source=source)

    def publish_metrics(self, payload: dict, source: str = "") -> None:
        for s in self.sinks:
            s.publish_metrics(payload, source=source)

    def set_source_status(self, source: str, online: bool) -> None:
        for s in self.sinks:
            s.set_source_status(source, online)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def health(self) -> dict:
        merged: dict = {}
        for s in self.sinks:
            merged.update({k: v for k, v in s.health().items() if v or k not in merged})
        return merged

    def failure(self) -> str:
        return next((f for f in (s.failure() for s in self.sinks) if f), "")

    def recovered_open_events(self) -> tuple[list[dict], float]:
        for s in self.sinks:
            events, alive = s.recovered_open_events()
            if events:
                return events, alive
        return [], 0.0
