"""What the daemon tests share: the kitchen device's config (written by the rig's config writer), its audio, and
sinks that keep what the daemon hands them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from edge.core.wavfile import write_wav
from edge.sinks.base import Sink
from edge.sinks.topics import Topics
from tools.rig.daemon import write_daemon_config

SILENCE = np.zeros(16000 * 4, np.int16)


def segment(miaow):
    """A miaow, then four seconds of silence: one Cat event, started and ended."""
    return np.concatenate([miaow, SILENCE])


def kitchen_config(path: Path, model, port: int, audio: dict, mqtt: dict | None = None,
                   detector: dict | None = None, metrics_s: float = 30.0, device: dict | None = None,
                   sources: list[dict] | None = None, clips: dict | None = None) -> Path:
    """The daemon on device "kitchen" watching Cat and Dog, publishing to 127.0.0.1:`port` and retrying fast;
    `audio`, `mqtt`, `detector` and `device` add to (or override) those tables; `sources`: its [[sources]];
    `clips`: its [clips] table (none: clips off)."""
    return write_daemon_config(
        path, device={"id": "kitchen", **(device or {})},
        audio={"stall_seconds": 5, **audio},
        model={"path": model},
        detector={"allow": ["Cat", "Dog"], "threshold": 0.5, "hold_seconds": 1.0, **(detector or {})},
        mqtt={"host": "127.0.0.1", "port": port, "reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1.0,
              **(mqtt or {})},
        metrics={"interval_seconds": metrics_s}, sources=sources, clips=clips)


class Layout:
    """Where a daemon test's audio comes from. "one": [audio] alone, raw PCM on stdin, the source the test feeds
    (id "", the device's own topics). "two": [[sources]] "a", a WAV replay of the audio the test gives config()
    (written beside the config), and "b", stdin, the source the test feeds: one classifier, one outbox and spool,
    each source on its own topics (<prefix>/kitchen/<id>/...)."""

    def __init__(self, name: str):
        self.two = name == "two"
        self.fed = "b" if self.two else ""  # the source on stdin
        self.ids = ["a", "b"] if self.two else [""]
        self.device = Topics("edge-audio", "kitchen")
        self.each = self.device.of("+") if self.two else self.device  # subscriptions: every source's topics

    def config(self, path: Path, model, port: int, mqtt: dict | None = None, wav=None, realtime: bool = False,
               **kw) -> Path:
        """The kitchen config (kitchen_config's `kw`); with two sources, "a" replays `wav` (int16 samples at
        16 kHz; at real time when `realtime`, else as fast as it goes)."""
        if not self.two:
            return kitchen_config(path, model, port, {"source": "stdin"}, mqtt, **kw)
        wav_path = Path(path).with_suffix(".a.wav")
        write_wav(wav_path, wav, 16000)
        sources = [{"id": "a", "source": "wav", "file": wav_path, "realtime": realtime},
                   {"id": "b", "source": "stdin"}]
        return kitchen_config(path, model, port, {}, mqtt, sources=sources, **kw)

    def said(self, kind: str, label: str = "Cat", source: str | None = None) -> str:
        """The log line of a `kind` event ('start', 'end') of `label` on `source` (default: the fed one)."""
        source = self.fed if source is None else source
        return rf"edge\.daemon: {re.escape(source + ': ') if source else ''}{kind} {label}\b"

    def topics(self, source: str) -> Topics:
        return self.device.of(source) if source else self.device

    def events(self, sub) -> list[dict]:
        """Every event `sub` received, in order; each came on the events topic of the source it names."""
        out = []
        for m in sub.received():
            if m.topic.endswith("/events"):
                e = json.loads(m.payload)
                assert e["source"] in self.ids and m.topic == self.topics(e["source"]).events, (m.topic, e)
                out.append(e)
        return out

    def of(self, sub, source: str | None = None) -> list[dict]:
        """The events of `source` (default: the fed one) `sub` received."""
        source = self.fed if source is None else source
        return [e for e in self.events(sub) if e["source"] == source]


class RecordingSink(Sink):
    """A sink for tests: keeps everything the daemon hands it."""

    def __init__(self):
        self.calls = []

    def publish_event(self, event):
        self.calls.append(("event", event.type, event.label))

    def set_state(self, label, on, source=""):
        self.calls.append(("state", label, on) if not source else ("state", source, label, on))

    def set_top(self, label, source=""):
        self.calls.append(("top", label) if not source else ("top", source, label))

    def publish_metrics(self, payload, source=""):
        self.calls.append(("metrics", payload["windows"]) if not source else ("metrics", source, payload["windows"]))

    def health(self):
        return {"queue_depth": 7}


class LeftOpen(RecordingSink):
    """A sink whose spool holds `open_events`, left by a run last alive at `last_alive` (it died during them); keeps
    the Events it is handed in `events` too."""

    def __init__(self, open_events: list, last_alive: float):
        super().__init__()
        self.open_events, self.last_alive = open_events, last_alive
        self.events = []

    def recovered_open_events(self):
        return self.open_events, self.last_alive

    def publish_event(self, event):
        self.events.append(event)
        super().publish_event(event)
