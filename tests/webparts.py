"""What the recorder's web tests share: a real store filled as the ingest fills it (devices, status, metrics,
events built with edge.core.events, a FLAC clip cut from a real recording) and an ingest stand-in whose live
queues the test feeds (the real Ingest's shape: {"kind", "device_id", "source", "payload", "ts"})."""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.core.events import Event

EVIL = "<img src=x onerror=alert(1)>"  # a device id that is markup: it must only ever show as text
EVIL_LABEL = "<b>Bold</b> & <script>alert(2)</script>"
KITCHEN, GARDEN = "pi-kitchen", "pi-garden"
CLIP_SECONDS = 3.0


class LiveIngest:
    """The ingest's live side (subscribe_live / unsubscribe_live) and its counters; `publish` hands an item to
    every queue of a device, as Ingest.fan_out does."""

    def __init__(self):
        self.received, self.stored = 12, 9
        self.rejected = {"malformed_json": 2, "clip_unknown_event": 1}
        self._lock = threading.Lock()
        self.queues: dict[str, list[queue.Queue]] = {}
        self.unsubscribed = 0

    def subscribe_live(self, device_id: str) -> queue.Queue:
        q: queue.Queue = queue.Queue(256)
        with self._lock:
            self.queues.setdefault(device_id, []).append(q)
        return q

    def unsubscribe_live(self, q: queue.Queue) -> None:
        with self._lock:
            for listeners in self.queues.values():
                if q in listeners:
                    listeners.remove(q)
                    self.unsubscribed += 1

    def listeners(self, device_id: str) -> int:
        with self._lock:
            return len(self.queues.get(device_id, []))

    def publish(self, device_id: str, source: str, kind: str, payload) -> None:
        item = {"kind": kind, "device_id": device_id, "source": source, "payload": payload, "ts": time.time()}
        with self._lock:
            for q in self.queues.get(device_id, []):
                q.put_nowait(item)


@dataclass
class Filled:
    now: float
    clip_event: str = ""
    clip_path: Path | None = None
    clip_bytes: bytes = b""
    evil_event: str = ""
    event_ids: list[str] = field(default_factory=list)


def metrics_payload(rtf: float, delegate: str = "cpu", reason: str = "no Edge TPU found", **extra) -> dict:
    return {"windows": 1200, "gated_windows": 10, "onset_windows": 3, "events": 7, "level_dbfs": -31.5,
            "inference_p50_ms": 4.25, "inference_p99_ms": 9.5, "real_time_factor": rtf, "overruns": 0,
            "skipped_windows": 0, "stalls": 0, "reopens": 0, "delegate": delegate, "delegate_reason": reason,
            "model": "yamnet", "delegate_switches": 0, "queue_depth": 3, "failed": "", "uptime_s": 3600.0,
            "interval_s": 30, **extra}


def event_pair(device: str, source: str, label: str, start: float, seconds: float, event_id: str,
               clip: dict | None = None, cut_short: bool = False) -> tuple[dict, dict]:
    common = {"event_id": event_id, "label": label, "class_index": 76, "peak_score": 0.91, "mean_score": 0.62,
                  "level_dbfs": -18.25, "device_id": device, "model": "yamnet", "delegate": "cpu", "source": source}
    start_event = Event(type="start", start_ts=start, end_ts=None, duration_s=0.0, **common)
    end_event = Event(type="end", start_ts=start, end_ts=start + seconds, duration_s=seconds, cut_short=cut_short,
                      clip=clip, **common)
    return start_event.to_dict(), end_event.to_dict()


def write_clip(assets: Path, target: Path, seconds: float = CLIP_SECONDS) -> bytes:
    """A FLAC clip: the first `seconds` of a real recording (the cat's miaow, 16 kHz mono)."""
    import soundfile
    samples, rate = soundfile.read(str(assets / "audio" / "miaow_16k.wav"), dtype="int16")
    target.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(target), samples[:int(seconds * rate)], rate, format="FLAC", subtype="PCM_16")
    return target.read_bytes()


def fill(store, clips: Path, assets: Path, now: float | None = None) -> Filled:
    """Three devices: the kitchen Pi online and healthy with a kept clip, the garden Pi's second microphone
    offline and stale with a problem, and a device whose id is markup, its events labelled with markup too."""
    now = time.time() if now is None else now
    out = Filled(now=now)
    store.set_status(KITCHEN, "", True, now - 3600)
    store.add_metrics(KITCHEN, "", metrics_payload(0.041), now - 5)
    store.set_status(GARDEN, "mic2", False, now - 7200)
    store.add_metrics(GARDEN, "mic2", metrics_payload(0.3, "edgetpu", "Edge TPU found", problem="no audio for 12 s",
                                                     source="mic2"), now - 4000)
    store.set_status(EVIL, "", True, now - 100)
    store.add_metrics(EVIL, "", metrics_payload(0.05, reason=EVIL), now - 5)
    path = clips / KITCHEN / "ev-clip.flac"
    out.clip_bytes = write_clip(assets, path)
    clip = {"status": "kept", "file": path.name, "seconds": CLIP_SECONDS, "bytes": len(out.clip_bytes),
            "sha256": hashlib.sha256(out.clip_bytes).hexdigest(), "format": "flac", "offset_s": 0.5}
    plan = [(KITCHEN, "", "Cat", now - 60, 2.0, "ev-clip", clip, False),
            (KITCHEN, "", "Dog", now - 1800, 1.5, "ev-dog", None, False),
            (KITCHEN, "", "Speech", now - 3 * 86400, 3.0, "ev-old", None, True),
            (GARDEN, "mic2", "Bird", now - 7300, 0.9, "ev-bird", None, False),
            (EVIL, "", EVIL_LABEL, now - 30, 1.0, "ev-evil", None, False)]
    for device, source, label, start, seconds, event_id, clip_info, cut in plan:
        for payload in event_pair(device, source, label, start, seconds, event_id, clip_info, cut):
            assert store.add_event(payload, start + seconds)
        out.event_ids.append(event_id)
    store.add_clip("ev-clip", KITCHEN, str(path), len(out.clip_bytes), clip["sha256"], now - 55)
    out.clip_event, out.clip_path, out.evil_event = "ev-clip", path, "ev-evil"
    return out
