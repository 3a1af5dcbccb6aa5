"""`edge-audio recorder` as a user starts it from the command line, against a real Mosquitto that wants TLS and a
password: it takes a device's events, serves them behind its --token-file, stops on SIGTERM with a summary, and
`--export ... --out FILE` writes what it stored. A CA it must not trust and a wrong password are each one log
line (not one per attempt) while it keeps trying, and a SIGTERM still ends it with 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli
from edge.core.events import Event
from tools import REPO
from tools.rig.broker import make_certs
from tools.rig.daemon import kit_env
from tools.rig.ports import free_port, have, wait_until

pytestmark = [pytest.mark.skipif(not have("mosquitto"), reason="needs Debian's mosquitto (make test installs it)"),
              pytest.mark.slow]
TOKEN = "a-long-web-token-7f3a"
DEVICE = "pi-porch"


class RecorderProcess:
    def __init__(self, folder: Path, *args):
        self.log_path = folder / "recorder.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "edge", "recorder", *map(str, args)], cwd=REPO,
                                         env=kit_env(), stdout=subprocess.DEVNULL, stderr=log)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, text: str, timeout: float = 30) -> bool:
        return wait_until(lambda: text in self.log or self.proc.poll() is not None, timeout, 0.05) and text in self.log

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def _publish_events(port: int, ca: Path, n: int) -> list[str]:
    """n events (a start and an end each) from a device client that logs in over TLS, as the daemon does."""
    import paho.mqtt.client as paho
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=paho.MQTTv5)
    client.username_pw_set("edge", "secret")
    client.tls_set(ca_certs=str(ca))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        ids, infos, start = [], [], time.time() - 60
        for i in range(n):
            ids.append(f"{DEVICE}-ev{i}")
            for kind in ("start", "end"):
                e = Event(kind, ids[-1], "Dog", 74, start + i * 5, None if kind == "start" else start + i * 5 + 2,
                          0.9, 0.8, 0.0 if kind == "start" else 2.0, -20.0, DEVICE, "yamnet", "cpu")
                infos.append(client.publish(f"edge-audio/{DEVICE}/events", e.to_json(), qos=1))
        for info in infos:
            info.wait_for_publish(30)
        return ids
    finally:
        client.loop_stop()
        client.disconnect()


def _get(port: int, path: str, token: str | None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _broker_args(b, folder: Path, ca: Path, password: str) -> list:
    (folder / "password").write_text(password + "\n")
    return ["--host", "127.0.0.1", "--port", b.port, "--username", "recorder", "--password-file",
            folder / "password", "--tls", "--ca-file", ca]


def test_over_tls_with_a_password_it_serves_behind_its_token_stops_on_sigterm_and_exports(tmp_path, broker):
    certs = make_certs(tmp_path / "pki")
    b = broker(users={"recorder": "rec-pw", "edge": "secret"}, tls=certs)
    (tmp_path / "token").write_text(TOKEN + "\n")
    db, http = f"sqlite:///{tmp_path / 'recorder.db'}", free_port()
    rec = RecorderProcess(tmp_path, *_broker_args(b, tmp_path, certs["ca"], "rec-pw"), "--db", db,
                          "--clips", tmp_path / "clips", "--http", f"127.0.0.1:{http}",
                          "--token-file", tmp_path / "token", "--client-id", "rec-tls")
    try:
        assert rec.wait_log("subscribed"), rec.log
        ids = _publish_events(b.port, certs["ca"], 3)
        assert wait_until(lambda: len((_get(http, "/api/events", TOKEN)[1] or [])) == 3, 30, 0.1), rec.log
        code, events = _get(http, "/api/events", TOKEN)
        assert code == 200 and sorted(e["event_id"] for e in events) == ids
        assert all(e["end_ts"] is not None for e in events)  # each start joined with its end
        assert _get(http, "/api/events", None)[0] == 401
        assert _get(http, "/api/events", "wrong")[0] == 401
        assert rec.terminate() == 0
        assert "recorder stopped: 6 messages received, 6 rows stored" in rec.log, rec.log
        assert "Traceback" not in rec.log and TOKEN not in rec.log and "rec-pw" not in rec.log
    finally:
        if rec.proc.poll() is None:
            rec.terminate()
    out = tmp_path / "export" / "events.jsonl"
    out.parent.mkdir()
    r = run_cli("recorder", "--db", db, "--export", "jsonl", "--out", out)
    assert r.code == 0 and r.out == "" and "3 events exported as jsonl" in r.err, r.err
    assert sorted(json.loads(line)["event_id"] for line in out.read_text().splitlines()) == ids
    r = run_cli("recorder", "--db", db, "--export", "csv")
    assert r.code == 0 and len(r.out.splitlines()) == 4 and all(i in r.out for i in ids)
    r = run_cli("recorder", "--db", db, "--export", "csv", "--out", tmp_path / "no" / "such" / "dir.csv")
    assert r.code == 2 and len(r.err_lines) == 1 and "--out" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("case", ["untrusted CA", "wrong password"])
def test_a_ca_it_must_not_trust_or_a_wrong_password_is_one_line_while_it_keeps_trying(tmp_path, broker, case):
    certs = make_certs(tmp_path / "pki")
    other = make_certs(tmp_path / "other-pki", name="other")
    b = broker(users={"recorder": "rec-pw"}, tls=certs)
    ca, password = (other["ca"], "rec-pw") if case == "untrusted CA" else (certs["ca"], "not-it")
    rec = RecorderProcess(tmp_path, *_broker_args(b, tmp_path, ca, password), "--db",
                          f"sqlite:///{tmp_path / 'recorder.db'}", "--http", "none")
    try:
        said = "TLS certificate not trusted" if case == "untrusted CA" else "the broker refused the connection"
        assert rec.wait_log(said), rec.log
        if case == "untrusted CA":
            assert "check --ca-file (ca_file); trying again" in rec.log
        time.sleep(2.0)  # several attempts (the back-off starts at 0.2 s)
        assert rec.proc.poll() is None and rec.log.count(said) == 1, rec.log
        assert rec.terminate() == 0
        assert "Traceback" not in rec.log and "not-it" not in rec.log
    finally:
        if rec.proc.poll() is None:
            rec.terminate()
