"""The recorder bench's parts: simulated devices (publisher processes, one paho client each), the recorder under
test (the real `edge-audio recorder` process, or an in-process Ingest when asked) and a reader of its database.

A publisher process holds a share of the devices. Each step it is told an offered rate of event messages (starts
and ends, schema 1, built with edge.core.events.Event) and publishes them at QoS 1 on a steady schedule (every
5 ms the messages then due), round robin over its devices: a device's start, and the same event's end about half a
round later, so at most one event of a device is open; at the step's end the open ones are ended. Each message
carries its publish time (time.time() just before publish()): a start as its start_ts, an end as its end_ts, so
the store's rows say when they were published. Every device also publishes its metrics every METRICS_EVERY_S and,
once, its status "online" (retained).
"""

from __future__ import annotations

import collections
import multiprocessing
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tools.rig.ports import RigError, stop_process, wait_until

PREFIX = "edge-audio"
METRICS_EVERY_S = 5.0
TICK_S = 0.005
LABELS = (("Dog", 69), ("Bark", 70), ("Chicken, rooster", 99), ("Alarm", 382), ("Glass", 435), ("Speech", 0))


def device_name(n: int) -> str:
    return f"bench-{n:04d}"


# -- the simulated devices (a publisher process) ---------------------------------------------------------------------
def _event_json(kind: str, event_id: str, device: str, start_ts: float, end_ts: float | None, label: tuple) -> str:
    from edge.core.events import Event
    return Event(type=kind, event_id=event_id, label=label[0], class_index=label[1], start_ts=start_ts,
                 end_ts=end_ts, peak_score=0.82, mean_score=0.61, duration_s=0.0 if end_ts is None else
                 round(end_ts - start_ts, 4), level_dbfs=-31.5, device_id=device, model="yamnet-bench",
                 delegate="cpu").to_json()


def _metrics_json(device: str, n: int) -> str:
    import json
    return json.dumps({"windows": 2 * n, "events": n, "real_time_factor": 0.041, "delegate": "cpu",
                       "delegate_reason": "no Edge TPU", "queue_depth": 0, "interval_s": METRICS_EVERY_S,
                       "inference_p50_ms": 7.1, "inference_p99_ms": 9.8, "failed": "", "device": device})


class Devices:
    """One publisher's devices and its paho client (in the publisher process)."""

    def __init__(self, port: int, devices: list[str], seed: int):
        import paho.mqtt.client as mqtt
        self.devices, self.rng = devices, random.Random(seed)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{seed}")
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)
        self.acked = 0
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        self.open: collections.deque = collections.deque()  # (event id, device, start ts, label)
        self.next_device = 0
        self.sent = 0
        self.metrics_sent = 0
        for d in devices:
            self._publish(f"{PREFIX}/{d}/status", "online", retain=True)

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        self.acked += 1

    def _publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)
        self.sent += 1

    def event_message(self) -> None:
        """The next message: an open event's end once half the devices have one open, else a start."""
        if self.open and len(self.open) >= max(1, len(self.devices) // 2):
            self.end_one()
            return
        device = self.devices[self.next_device]
        self.next_device = (self.next_device + 1) % len(self.devices)
        event_id, label, now = uuid.uuid4().hex, self.rng.choice(LABELS), time.time()
        self._publish(f"{PREFIX}/{device}/events", _event_json("start", event_id, device, now, None, label))
        self.open.append((event_id, device, now, label))

    def end_one(self) -> None:
        event_id, device, start, label = self.open.popleft()
        now = time.time()
        self._publish(f"{PREFIX}/{device}/events", _event_json("end", event_id, device, start, now, label))

    def metrics(self, k: int) -> None:
        device = self.devices[k % len(self.devices)]
        self._publish(f"{PREFIX}/{device}/metrics", _metrics_json(device, k))
        self.metrics_sent += 1

    def step(self, rate: float, seconds: float, start_at: float) -> dict:
        """Offer `rate` event messages a second for `seconds` from `start_at` (plus the open events' ends)."""
        n_metrics = len(self.devices) / METRICS_EVERY_S
        sent0, metrics0, i, k, late = self.sent - self.metrics_sent, self.metrics_sent, 0, 0, 0.0
        end_at = start_at + seconds
        while (now := time.time()) < end_at:
            while i < rate * (now - start_at) and start_at + i / rate < end_at:
                late = max(late, now - (start_at + i / rate))
                self.event_message()
                i += 1
            while k < n_metrics * (now - start_at):
                self.metrics(k)
                k += 1
            time.sleep(max(0.0, min(TICK_S, end_at - time.time())))
        while self.open:
            self.end_one()
        events = self.sent - self.metrics_sent - sent0
        wait_until(lambda: self.acked >= self.sent, 10.0, 0.01)
        return {"events": events, "metrics": self.metrics_sent - metrics0, "max_late_s": late,
                "unacked": self.sent - self.acked}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publisher_main(conn, port: int, devices: list[str], seed: int) -> None:
    """A publisher process: steps as the pipe asks ({"rate", "seconds", "start_at"}) until it sends None."""
    pub = Devices(port, devices, seed)
    conn.send({"ready": True})
    try:
        while (ask := conn.recv()) is not None:
            conn.send(pub.step(ask["rate"], ask["seconds"], ask["start_at"]))
    finally:
        pub.close()


class Publishers:
    """`processes` publisher processes sharing `devices` simulated devices."""

    def __init__(self, port: int, devices: int, processes: int):
        ctx = multiprocessing.get_context("spawn")
        names = [device_name(n) for n in range(devices)]
        self.pipes, self.procs = [], []
        for p in range(processes):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=publisher_main, args=(theirs, port, names[p::processes], p), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)
        for pipe in self.pipes:
            if not pipe.poll(30):
                self.close()
                raise RigError("a publisher process did not connect to the broker in 30 s")
            pipe.recv()

    def step(self, rate: float, seconds: float, lead_s: float = 0.3) -> tuple[float, dict]:
        """Every publisher offers its share of `rate` for `seconds`: (the start time, the summed results)."""
        start_at = time.time() + lead_s
        for pipe in self.pipes:
            pipe.send({"rate": rate / len(self.pipes), "seconds": seconds, "start_at": start_at})
        results = [pipe.recv() for pipe in self.pipes]
        total = {k: sum(r[k] for r in results) for k in ("events", "metrics", "unacked")}
        total["max_late_s"] = max(r["max_late_s"] for r in results)
        return start_at, total

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


# -- the recorder under test -----------------------------------------------------------------------------------------
def rss_mib(pid: int) -> float:
    """VmRSS of a process in MiB (its resident memory now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RigError(f"no VmRSS for process {pid}")


class RecorderProcess:
    """`edge-audio recorder --http none` on the broker and database, its log in `folder`."""

    def __init__(self, port: int, db: str, folder: Path, name: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"recorder-{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "recorder", "--http", "none", "--db", db, "--host", "127.0.0.1",
             "--port", str(port), "--group", f"bench-{name}", "--client-id", f"bench-recorder-{name}",
             "--session-expiry", "1", "--clips", str(folder / f"clips-{name}")],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        if not wait_until(lambda: b"connected to" in self.log_path.read_bytes() or self.proc.poll() is not None,
                          30, 0.05) or self.proc.poll() is not None:
            tail = self.log_tail()
            self.stop()
            raise RigError(f"the recorder did not connect: {tail}")

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    def log_tail(self, n: int = 300) -> str:
        return " ".join(self.log_path.read_text(errors="replace").split())[-n:]

    def stop(self) -> int:
        stop_process(self.proc, 15)
        self._log.close()
        return self.proc.returncode


class RecorderInProcess:
    """An Ingest and its store in this process (the profile, or where the command is not there)."""

    def __init__(self, port: int, db: str, folder: Path, name: str):
        from edge.app.recorder.ingest import Ingest
        from edge.app.recorder.options import Options
        from edge.app.recorder.store import open_store
        self.store = open_store(db)
        options = Options(host="127.0.0.1", port=port, group=f"bench-{name}", client_id=f"bench-recorder-{name}",
                          session_expiry_s=1, db=db, clips_dir=str(folder / f"clips-{name}"), http="")
        self.ingest = Ingest(self.store, options)
        self.ingest.start()
        self.pid = None
        if not wait_until(lambda: self.ingest.connected, 30, 0.05):
            self.stop()
            raise RigError("the in-process recorder did not connect")

    def rss_mib(self) -> float:
        import os
        return rss_mib(os.getpid())

    def stop(self) -> int:
        self.ingest.stop()
        self.store.close()
        return 0


# -- the database, read from here --------------------------------------------------------------------------------------
class Reader:
    """A second connection to the recorder's database: how many event messages it holds, and when each of those
    published since a time was received for storing."""

    def __init__(self, url: str):
        self.postgres = url.startswith("postgres")
        if self.postgres:
            import psycopg
            self.conn = psycopg.connect(url, autocommit=True)
        else:
            self.conn = sqlite3.connect(url.split(":", 1)[1].removeprefix("//"), isolation_level=None)

    def _q(self, query: str, params: tuple = ()) -> list[tuple]:
        return self.conn.execute(query.replace("?", "%s") if self.postgres else query, params).fetchall()

    def messages(self) -> int:
        return self._q("SELECT COUNT(*) FROM messages")[0][0]

    def metrics(self) -> int:
        return self._q("SELECT COUNT(*) FROM metrics")[0][0]

    def stored_since(self, ts: float) -> list[tuple[float, float]]:
        """(publish ts, received ts) of every event message received since `ts`: a start's publish time is its
        start_ts, an end's its end_ts."""
        return [(float(p), float(r)) for p, r in self._q(
            "SELECT CASE WHEN m.type = 'start' THEN e.start_ts ELSE e.end_ts END, m.received_ts FROM messages m"
            " JOIN events e ON e.event_id = m.event_id WHERE m.received_ts >= ?", (ts,))]

    def close(self) -> None:
        self.conn.close()
