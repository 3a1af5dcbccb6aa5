"""What a sink publishes per source: each source's topics (topics.py), the labels it watches, its own top-class
hold, and its retained topics as they start (every watched label OFF; a named source's status "offline" until the
daemon says it delivers audio). Source "" is the device's own layout, as without sources.

`watched` is {source id: [labels]}; a plain list of labels means {"": labels} (a config with [audio] alone)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from . import homeassistant
from .topics import Topics


def by_source(watched: Mapping[str, Iterable[str]] | Iterable[str]) -> dict[str, list[str]]:
    """{source id: [labels]} from that or from a plain list of labels (the one source "")."""
    if isinstance(watched, Mapping):
        return {source: list(labels) for source, labels in watched.items()}
    return {"": list(watched)}


class SourceTopics:
    """The sources of one device; `hold_s` and `clock` are the top class's hold (homeassistant.HeldTop)."""

    def __init__(self, device: Topics, watched, hold_s: float = 0.0, clock=time.monotonic):
        self.device = device
        self.watched = by_source(watched)
        self.hold_s, self.clock = hold_s, clock
        self._topics: dict[str, Topics] = {"": device}
        self._tops: dict[str, homeassistant.HeldTop] = {}
        self.holding: set[str] = set()  # sources whose top class waits for its hold
        self._nodes: dict[str, str] | None = None  # Home Assistant node id -> source

    @property
    def named(self) -> list[str]:
        return [s for s in self.watched if s]

    def topics(self, source: str) -> Topics:
        t = self._topics.get(source)
        if t is None:
            t = self._topics[source] = self.device.of(source)
        return t

    def initial(self) -> list[tuple[str, str]]:
        """(topic, value) the broker must hold from the start, after the device's status: each named source's
        status "offline", then every watched label of every source "OFF" (an event left open by a previous run is
        ended, cut short, by the daemon as it starts)."""
        out = [(self.topics(s).status, "offline") for s in self.named]
        for source, labels in self.watched.items():
            t = self.topics(source)
            out += [(t.state(label), "OFF") for label in labels]
        return out

    def offer_top(self, label: str, source: str) -> str | None:
        """The source's new top class: returned when it is to be published now, else held."""
        top = self._tops.get(source)
        if top is None:
            top = self._tops[source] = homeassistant.HeldTop(self.hold_s, self.clock)
        shown = top.offer(label)
        if top.pending is None:
            self.holding.discard(source)
        else:
            self.holding.add(source)
        return shown

    def due_tops(self) -> list[tuple[str, str]]:
        """(source, top class) for every source whose pending top class has now held."""
        out = []
        for source in list(self.holding):
            top = self._tops[source]
            label = top.due()
            if label is not None:
                out.append((source, label))
            if top.pending is None:
                self.holding.discard(source)
        return out

    # -- Home Assistant --------------------------------------------------------------------------------------------
    def discovery(self, discovery_prefix: str, model: str, board: str) -> list[tuple[str, str]]:
        return homeassistant.announcements(self.device, discovery_prefix, self.watched, model, board)

    def config_subscriptions(self, discovery_prefix: str) -> list[str]:
        """Each source's node of binary sensor configs (the device's own for source "")."""
        return [homeassistant.own_configs(self.topics(s), discovery_prefix) for s in self.watched]

    def stale(self, topic: str, payload: bytes) -> str | None:
        """The state topic to clear when `topic` is a retained config of a label a source no longer watches."""
        if self._nodes is None:
            self._nodes = {homeassistant.node(self.topics(s)): s for s in self.watched}
        source = self._nodes.get(topic.split("/")[-3] if topic.count("/") >= 3 else "")
        if source is None:
            return None
        t = self.topics(source)
        label = homeassistant.stale_config(topic, payload, t, self.watched[source])
        return t.state(label) if label else None
