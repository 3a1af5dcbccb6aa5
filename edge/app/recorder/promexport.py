"""/metrics: every device's and source's figures, as the recorder last heard them, for Prometheus (the official
prometheus_client): one scrape target for a fleet whose devices sit behind NAT. A custom collector reads the store
at scrape time (nothing is kept in the process per device), in a registry of the app's own."""

from __future__ import annotations

import math
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

DEVICE = ["device", "source"]
# (metric name, help, key in the store's devices() row)
ROW_GAUGES = [
    ("edge_audio_real_time_factor", "Busy time over audio time of the last metrics (under 1: keeps up)",
     "real_time_factor"),
    ("edge_audio_queue_depth", "Messages waiting in the device's spool", "queue_depth"),
    ("edge_audio_events_today", "Events stored today (UTC)", "events_today"),
    ("edge_audio_clips_bytes", "Bytes of the device's clips on the recorder's disk", "clips_bytes"),
    ("edge_audio_last_metrics_timestamp_seconds", "When the device's last metrics arrived (unix seconds)",
     "last_metrics_ts"),
    ("edge_audio_status_since_timestamp_seconds", "Since when the device is online or offline", "since_ts"),
]
# (metric name, help, key in the latest metrics payload)
PAYLOAD_GAUGES = [
    ("edge_audio_inference_p50_ms", "Median invoke time of the model (ms)", "inference_p50_ms"),
    ("edge_audio_inference_p99_ms", "99th percentile invoke time of the model (ms)", "inference_p99_ms"),
    ("edge_audio_latency_p50_ms", "Median wait of a window before its invoke (ms)", "latency_p50_ms"),
    ("edge_audio_latency_p99_ms", "99th percentile wait of a window before its invoke (ms)", "latency_p99_ms"),
    ("edge_audio_level_dbfs", "Level of the audio heard since the last metrics (dBFS)", "level_dbfs"),
    ("edge_audio_uptime_seconds", "How long the daemon has run", "uptime_s"),
]
PAYLOAD_COUNTERS = [
    ("edge_audio_events", "Events the device detected since it started", "events"),
    ("edge_audio_windows", "Windows the device classified since it started", "windows"),
    ("edge_audio_overruns", "Capture overruns since the daemon started", "overruns"),
    ("edge_audio_stalls", "Capture stalls since the daemon started", "stalls"),
]


def _number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


class FleetCollector(Collector):
    """Yields, at each scrape, the fleet's gauges from store.devices() and store.latest(), and the recorder's
    own counters from the ingest."""

    def __init__(self, store, ingest):
        self.store, self.ingest = store, ingest

    def collect(self):
        rows = self.store.devices(time.time())
        yield from self.device_families(rows)
        yield from self.payload_families(rows)
        yield from self.recorder_families()

    def device_families(self, rows):
        online = GaugeMetricFamily("edge_audio_online", "1 when the device (or source) is online, 0 offline",
                                   labels=DEVICE)
        stale = GaugeMetricFamily("edge_audio_stale", "1 when the device's metrics are overdue", labels=DEVICE)
        degraded = GaugeMetricFamily("edge_audio_degraded", "1 when the device reports a problem", labels=DEVICE)
        delegate = GaugeMetricFamily("edge_audio_delegate_info", "The delegate the device runs on and why",
                                     labels=[*DEVICE, "delegate", "reason"])
        gauges = [GaugeMetricFamily(name, text, labels=DEVICE) for name, text, _ in ROW_GAUGES]
        for row in rows:
            key = [str(row.get("device_id", "")), str(row.get("source", ""))]
            if row.get("online") is not None:
                online.add_metric(key, 1.0 if row["online"] else 0.0)
            stale.add_metric(key, 1.0 if row.get("stale") else 0.0)
            degraded.add_metric(key, 1.0 if row.get("degraded") else 0.0)
            if row.get("delegate"):
                delegate.add_metric([*key, str(row["delegate"]), str(row.get("delegate_reason") or "")], 1.0)
            for family, (_, _, field) in zip(gauges, ROW_GAUGES):
                value = _number(row.get(field))
                if value is not None:
                    family.add_metric(key, value)
        yield from (online, stale, degraded, delegate, *gauges)

    def payload_families(self, rows):
        gauges = [GaugeMetricFamily(name, text, labels=DEVICE) for name, text, _ in PAYLOAD_GAUGES]
        counters = [CounterMetricFamily(name, text, labels=DEVICE) for name, text, _ in PAYLOAD_COUNTERS]
        for device_id in sorted({str(row.get("device_id", "")) for row in rows}):
            for source, payload in (self.store.latest(device_id) or {}).items():
                if not isinstance(payload, dict):
                    continue
                key = [device_id, str(source)]
                for family, (_, _, field) in zip(gauges, PAYLOAD_GAUGES):
                    value = _number(payload.get(field))
                    if value is not None:
                        family.add_metric(key, value)
                for family, (_, _, field) in zip(counters, PAYLOAD_COUNTERS):
                    value = _number(payload.get(field))
                    if value is not None:
                        family.add_metric(key, value)
        yield from (*gauges, *counters)

    def recorder_families(self):
        ingest = self.ingest
        for name, text, attr in (("recorder_messages_received", "MQTT messages the recorder received", "received"),
                                 ("recorder_rows_stored", "Rows the recorder stored", "stored")):
            counts = getattr(ingest, attr, 0) if ingest is not None else 0
            if isinstance(counts, dict):  # by kind
                family = CounterMetricFamily(name, text, labels=["kind"])
                for kind, value in sorted(counts.items()):
                    family.add_metric([str(kind)], float(value))
            else:
                family = CounterMetricFamily(name, text, value=float(counts or 0))
            yield family
        rejected = CounterMetricFamily("recorder_rejected", "Messages the recorder refused, by reason",
                                       labels=["reason"])
        for reason, value in sorted((getattr(ingest, "rejected", None) or {}).items()):
            rejected.add_metric([str(reason)], float(value))
        yield rejected


def registry_for(store, ingest) -> CollectorRegistry:
    """A registry of the app's own (two apps in one process never share figures) holding the fleet collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(store, ingest))
    return registry


async def metrics_endpoint(request: Request) -> Response:
    body = await run_in_threadpool(generate_latest, request.app.state.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
