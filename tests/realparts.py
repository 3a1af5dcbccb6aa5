"""Real components for integration tests: a Mosquitto broker on a free loopback port (anonymous, password + ACL,
TLS), an ALSA capture device through the `file` plugin reading a FIFO, and a recording MQTT subscriber."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from tools.bench.live import free_port, stop_process, wait_for_port  # one place for these, with the tools


def make_certs(folder: Path, name: str = "ca") -> dict:
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / f"{name}.key", folder / f"{name}.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=edge-audio test {name}",
        "-keyout", str(ca_key), "-out", str(ca_crt))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-extfile", str(ext), "-out", str(crt))
    return {"ca": ca_crt, "cert": crt, "key": key}


class Broker:
    def __init__(self, folder: Path, users: dict | None = None, acl: str | None = None, tls: dict | None = None,
                 persistence: bool = False):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        keep = ["persistence true", f"persistence_location {folder}/", "autosave_interval 1"] if persistence \
            else ["persistence false"]
        lines = [f"listener {self.port} 127.0.0.1", "user root", *keep,
                 f"allow_anonymous {'false' if users else 'true'}", "log_dest stderr", "log_type error"]
        if users:
            pw = folder / "passwd"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True, capture_output=True)
            lines.append(f"password_file {pw}")
        if acl:
            (folder / "acl").write_text(acl)
            lines.append(f"acl_file {folder / 'acl'}")
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.folder / "broker.log", "ab"))
        wait_for_port(self.port)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def save(self, timeout_s: float = 5.0) -> None:
        """Have a persistent broker write its sessions to disk now (SIGUSR1), as it does every autosave interval:
        a crash after this keeps the subscribers' sessions."""
        db = self.folder / "mosquitto.db"
        before = db.stat().st_mtime_ns if db.exists() else 0
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (not db.exists() or db.stat().st_mtime_ns == before):
            time.sleep(0.02)
        assert db.exists() and db.stat().st_mtime_ns != before, "the broker did not save its database"

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.resume()
            stop_process(self.proc)


class Subscriber:
    """Records every message on the given topics (MQTT v5, its own thread)."""

    def __init__(self, port: int, topics=("#",), username=None, password=None, tls_ca=None, session: str = ""):
        """`session`: a client id whose session the broker keeps while it is away (messages are queued for it)."""
        import paho.mqtt.client as paho
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=session, protocol=paho.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=str(tls_ca))
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        kwargs = {}
        if session:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            kwargs = {"clean_start": False, "properties": props}
            self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect("127.0.0.1", port, 30, **kwargs)
        self.client.loop_start()
        assert subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def payloads(self, suffix: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def events(self) -> list[dict]:
        return [json.loads(p) for p in self.payloads("/events")]

    def wait(self, predicate, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class FileMic:
    """An ALSA capture PCM named `testmic` (the `file` plugin over a `null` slave) that reads raw S16_LE audio from
    a file. It is not paced, and after the end of the file it repeats the last period: end recordings with silence.
    """

    def __init__(self, folder: Path, pcm: np.ndarray, name: str = "testmic"):
        folder.mkdir(parents=True, exist_ok=True)
        self.raw = folder / "mic.raw"
        pcm.astype("<i2").tofile(self.raw)
        self.conf = folder / "asound.conf"
        self.conf.write_text(f'pcm.{name} {{ type file slave.pcm "null" file "/dev/null" '
                             f'infile "{self.raw}" format "raw" }}\n')
        self.env = {"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.conf}"}


class FifoMic:
    """An ALSA capture PCM named `testmic` that reads raw S16_LE audio from a FIFO the test writes to."""

    def __init__(self, folder: Path, name: str = "testmic"):
        folder.mkdir(parents=True, exist_ok=True)
        self.fifo = folder / "mic.fifo"
        os.mkfifo(self.fifo)
        self.conf = folder / "asound.conf"
        self.conf.write_text(f'pcm.{name} {{ type file slave.pcm "null" file "/dev/null" '
                             f'infile "{self.fifo}" format "raw" }}\n')
        self.env = {"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.conf}"}
        self._fd = None

    def open_writer(self) -> None:
        # O_RDWR never blocks on a FIFO, and keeps it open so the reader does not see end-of-file
        self._fd = os.open(self.fifo, os.O_RDWR)

    def write(self, pcm: np.ndarray, period_frames: int = 1024) -> None:
        """Write whole periods, one write each: a FIFO write of up to PIPE_BUF bytes is atomic, so the plugin's
        reads never see half a period (it does not cope with short reads)."""
        data = pcm.astype("<i2").tobytes()
        step = period_frames * 2
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            while piece:
                n = os.write(self._fd, piece)
                piece = piece[n:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def have(*commands: str) -> bool:
    return all(shutil.which(c) for c in commands)
