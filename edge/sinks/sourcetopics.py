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

    @property
    def _sources_only(self) -> bool:
        """Named sources and no source "": the device's own node holds nothing but its Delegate sensor."""
        return bool(self.watched) and "" not in self.watched

    def config_subscriptions(self, discovery_prefix: str) -> list[str]:
        """Each source's node of binary sensor configs (the device's own for source ""); with named sources only,
        every config in the device's node too (what a config with [audio] alone announced there)."""
        out = [homeassistant.own_configs(self.topics(s), discovery_prefix) for s in self.watched]
        if self._sources_only:
            out.append(f"{discovery_prefix}/+/{homeassistant.node(self.device)}/+/config")
        return out

    def stale(self, topic: str, payload: bytes, announced=()) -> tuple[str, list[str]] | None:
        """When `topic` is a retained config to remove (a label a source no longer watches, or with named sources
        only an entity the device announced before it had sources): what it is, as the log says it, and the other
        topics to clear with it (its state, its top class); else None. `announced`: the config topics this run
        announces."""
        if self._nodes is None:
            self._nodes = {homeassistant.node(self.topics(s)): s for s in self.watched}
        source = self._nodes.get(topic.split("/")[-3] if topic.count("/") >= 3 else "")
        if source is not None:
            t = self.topics(source)
            label = homeassistant.stale_config(topic, payload, t, self.watched[source])
            return (f"{label} (no longer in detector.allow)", [t.state(label)]) if label else None
        if not self._sources_only or not homeassistant.leftover(topic, payload, self.device, announced):
            return None
        kind, object_id = topic.split("/")[-4], topic.split("/")[-2]
        also = {"binary_sensor": [f"{self.device.base}/state/{object_id}"], "sensor": [self.device.top] if
                object_id == "top" else []}.get(kind, [])
        return f"{topic} (the device's sources are devices of their own now)", also
