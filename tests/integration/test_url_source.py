"""The url source against real ffmpeg on loopback: ffmpeg serving a recording over HTTP (tools/rig/streamserver.py),
servers that are down, refuse the login or never answer, and a server killed mid-stream and back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.audio import make_source
from edge.audio.capture import SourceLost
from edge.audio.url import UrlSource
from edge.config import AudioConfig
from edge.core.errors import EXIT_CONFIG, ConfigError
from tools.rig.ports import free_port, wait_until
from tools.rig.streamserver import StreamServer

pytestmark = pytest.mark.usefixtures("needs_ffmpeg")

SECRET = "s3cr3t-pw"


def _cfg(url: str, **kw) -> AudioConfig:
    return AudioConfig(source="url", url=url, **{"stall_seconds": 2.0, "reopen_max_seconds": 30.0, **kw})


def _with_login(url: str) -> str:
    return url.replace("://", f"://bob:{SECRET}@", 1)


def _read_until_lost(src, limit_s: float = 30.0) -> tuple[np.ndarray, SourceLost]:
    chunks, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            chunks.append(src.read())
        except SourceLost as exc:
            return np.concatenate(chunks or [np.zeros(0, np.int16)]), exc
    raise AssertionError(f"no SourceLost within {limit_s:g} s")


def _lost_on_open(src) -> SourceLost:
    src.open()
    return _read_until_lost(src, 20)[1]


def _decoded(wav: Path) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-vn", "-ac", "1", "-ar", "16000",
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, "<i2")


def _ffmpeg_children(server: StreamServer) -> list[int]:
    """This process's children that run ffmpeg, but for the server (zombies included: an unreaped child counts).
    Read from each process's own /proc/PID/stat (its parent and name): a thread's /proc/.../children list may
    miss children while others start or exit, which the kernel documents as unreliable on a running process."""
    me, named = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == server.proc.pid:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        comm, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if comm == "ffmpeg" and int(fields[1]) == me:
            named.append(int(entry.name))
    return named


def _assert_clean(exc: SourceLost, src) -> str:
    text = str(exc)
    assert SECRET not in text and "bob:" not in text and "\n" not in text, text
    assert text.startswith(src.name + ": "), text
    return text


@pytest.mark.parametrize("recording,container", [("baby_5000ms.wav", "nut"), ("miaow_16k.wav", "nut"),
                                                 ("jingle_975ms.wav", "wav")])  # 44.1, 16 and 48 kHz
def test_reads_the_served_recording_as_ffmpeg_decodes_the_file(assets, recording, container):
    wav = assets / "audio" / recording
    with StreamServer(wav, realtime=False, container=container) as server:
        src = make_source(_cfg(_with_login(server.url)))
        assert isinstance(src, UrlSource) and (src.rate_hz, src.channels) == (16000, 1)
        assert src.name == f"stream {server.url.replace('://', '://***@')}"
        src.open()
        got, exc = _read_until_lost(src)
        src.close()
    want = _decoded(wav)
    assert abs(len(got) - len(want)) <= src.cfg.period_frames
    n = min(len(got), len(want))
    assert np.corrcoef(got[:n].astype(float), want[:n].astype(float))[0, 1] > 0.999
    assert np.array_equal(got, want)  # the same decoder and resampler: the very same samples
    assert _assert_clean(exc, src).endswith("ffmpeg exited with status 0 (the stream ended)")
    assert getattr(exc, "retry_after", None) is None


def test_a_server_that_is_down_is_retried_slowly_and_its_password_never_shown():
    src = UrlSource(_cfg(_with_login(f"http://127.0.0.1:{free_port()}/cam?token=tok-{SECRET}")))
    assert SECRET not in src.name
    exc = _lost_on_open(src)
    text = _assert_clean(exc, src)
    assert "Connection refused" in text and "retrying every 30 s" in text, text
    assert exc.retry_after == 30.0
    assert SECRET not in repr(exc.args)
    src.close()


def test_a_missing_ffmpeg_stops_the_daemon_at_start_with_one_line():
    with pytest.raises(ConfigError) as err:
        make_source(_cfg(_with_login("rtsp://cam.lan/stream1"), ffmpeg="/nonexistent/ffmpeg"))
    text = str(err.value)
    assert "\n" not in text and SECRET not in text and "apt install ffmpeg" in text and "/nonexistent/ffmpeg" in text
    assert err.value.exit_status == EXIT_CONFIG


class Refuser:
    """A loopback server that answers every request with `status` (HTTP or RTSP), or (status 0) accepts the
    connection and never answers."""

    def __init__(self, proto: str, status: int):
        self.proto, self.status = proto, status
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.status:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn) -> None:
        reason = {401: "Unauthorized", 403: "Forbidden"}[self.status]
        try:
            while data := conn.recv(4096):
                cseq = [l.split(b":")[1].strip().decode() for l in data.split(b"\r\n") if l.lower().startswith(b"cseq")]
                head = f"RTSP/1.0 {self.status} {reason}\r\nCSeq: {cseq[0] if cseq else 1}" if self.proto == "rtsp" \
                    else f"HTTP/1.1 {self.status} {reason}\r\nContent-Length: 0"
                conn.sendall(f"{head}\r\nWWW-Authenticate: Basic realm=\"cam\"\r\n\r\n".encode())
        except OSError:
            pass

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way: a close alone leaves the port listening
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("proto,status", [("http", 401), ("http", 403), ("rtsp", 401)])
def test_a_refused_login_is_retried_slowly(proto, status):
    server = Refuser(proto, status)
    try:
        src = UrlSource(_cfg(_with_login(f"{proto}://127.0.0.1:{server.port}/stream1")))
        exc = _lost_on_open(src)
    finally:
        server.close()
    text = _assert_clean(exc, src)
    assert f"{status}" in text and "the login was refused" in text, text
    assert exc.retry_after == 30.0


@pytest.mark.parametrize("proto", ["http", "rtsp"])
def test_a_server_that_never_answers_times_out_after_stall_seconds(proto):
    """The network timeout ffmpeg 5.1 takes for each protocol works: rw_timeout (HTTP), -timeout (RTSP)."""
    server = Refuser(proto, 0)
    try:
        src = UrlSource(_cfg(_with_login(f"{proto}://127.0.0.1:{server.port}/stream1"), stall_seconds=1.0))
        t0 = time.monotonic()
        exc = _lost_on_open(src)
        took = time.monotonic() - t0
    finally:
        server.close()
    text = _assert_clean(exc, src)
    assert 0.9 < took < 5, (took, text)
    assert ("timed out" in text or "no answer within 1 s" in text) and exc.retry_after == 30.0, text


def test_a_server_killed_mid_stream_is_lost_and_read_again_once_it_is_back(assets, capsys):
    with StreamServer(assets / "audio" / "miaow_16k.wav", realtime=True) as server:
        src = UrlSource(_cfg(_with_login(server.url)))
        src.open()
        server.wait_client()
        heard = 0
        while heard < 16000:  # a second of the recording, at real time
            heard += src.read().size
        server.kill()
        t0 = time.monotonic()
        _, exc = _read_until_lost(src, 10)
        lost_after = time.monotonic() - t0
        _assert_clean(exc, src)
        assert getattr(exc, "retry_after", None) is None, exc  # it played: the normal backoff
        refused = _lost_on_open(src)  # still down: a slow retry
        assert refused.retry_after == 30.0, refused

        server.start()
        t0 = time.monotonic()
        src.open()
        chunk = src.read()
        while not chunk.size:
            chunk = src.read()
        back_after = time.monotonic() - t0
        assert np.abs(chunk).max() > 0
        src.close()
    with capsys.disabled():
        print(f"\n  url source: lost {lost_after * 1000:.0f} ms after the server was killed; first audio "
              f"{back_after * 1000:.0f} ms after open() on the restarted server")
    assert back_after < 3.0


def test_close_stops_ffmpeg_from_any_thread_and_leaves_no_child(assets):
    with StreamServer(assets / "audio" / "miaow_16k.wav", realtime=True, loop=True) as server:
        src = UrlSource(_cfg(server.url, stall_seconds=10.0))
        src.open()
        assert src.read() is not None
        assert len(_ffmpeg_children(server)) == 1
        pid = _ffmpeg_children(server)[0]
        outcome = []

        def reader():  # blocked in read() while another thread closes
            try:
                while True:
                    src.read()
            except SourceLost as exc:
                outcome.append(exc)
        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        src.close()
        thread.join(3)
        assert not thread.is_alive() and outcome, "the blocked read did not end when the source was closed"
        assert time.monotonic() - t0 < 2.0
        assert _ffmpeg_children(server) == [] and not Path(f"/proc/{pid}").exists()
        src.close()  # again: nothing to do
        server.wait_done(5)  # its one client gone
        server.start()
        src.open()  # and open again after close
        assert src.read() is not None
        first = _ffmpeg_children(server)
        src.open()  # an old process still there is replaced, not left behind
        assert len(_ffmpeg_children(server)) == 1 and _ffmpeg_children(server) != first, \
            (first, _ffmpeg_children(server))
        src.close()
        assert _ffmpeg_children(server) == []


def test_a_chatty_ffmpeg_never_blocks_on_its_stderr(tmp_path):
    """A stand-in for ffmpeg that writes 2 MB of warnings (far more than a pipe holds), then audio, then fails."""
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\n"
                    "i=0; while [ $i -lt 20000 ]; do echo \"warning $i: $*\" >&2; i=$((i+1)); done\n"
                    "head -c 32001 /dev/urandom\n"
                    "echo 'http://bob:" + SECRET + "@127.0.0.1:9/s: the very last word' >&2; exit 3\n")
    fake.chmod(0o755)
    src = UrlSource(_cfg(_with_login("http://127.0.0.1:9/s"), ffmpeg=str(fake)))
    src.open()
    got, exc = _read_until_lost(src, 30)
    assert len(got) == 16000  # the odd byte is carried, never half a sample
    assert _assert_clean(exc, src).endswith("ffmpeg exited with status 3: the very last word"), exc
    src.close()


KEEP_READING = """
import sys
from edge.audio.url import UrlSource
from edge.config import AudioConfig
src = UrlSource(AudioConfig(source="url", url=sys.argv[1], stall_seconds=30))
src.open()
src.read()
print(src._run.proc.pid, flush=True)
sys.stdin.read()
"""


def test_ffmpeg_dies_of_sigpipe_when_the_daemon_is_killed(assets):
    """No daemon to close it: ffmpeg's next write to the orphaned pipe ends it."""
    with StreamServer(assets / "audio" / "miaow_16k.wav", realtime=True, loop=True) as server:
        root = Path(__file__).resolve().parents[2]
        owner = subprocess.Popen([sys.executable, "-c", KEEP_READING, server.url], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, cwd=root)
        pid = int(owner.stdout.readline())
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        owner.stdin.close()
        owner.stdout.close()

        def gone() -> bool:
            try:
                return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
            except OSError:
                return True
        assert wait_until(gone, 5.0), "ffmpeg outlived the killed daemon"


def test_the_daemons_stop_ends_a_stream_whose_read_waits_on_a_silent_camera():
    """A camera that took the connection and sends nothing: the capture thread waits in read(). Stopping the
    capture closes the stream there and then (ffmpeg stopped), instead of leaving ffmpeg to its network timeout."""
    from types import SimpleNamespace

    from edge.audio.capture import Capture
    server = Refuser("http", 0)
    nobody = SimpleNamespace(proc=SimpleNamespace(pid=-1))
    try:
        cfg = _cfg(f"http://127.0.0.1:{server.port}/stream1", stall_seconds=60.0)
        capture = Capture(UrlSource(cfg), cfg)
        capture.start()
        assert wait_until(lambda: len(_ffmpeg_children(nobody)) == 1 and server.held, 10), \
                (_ffmpeg_children(nobody), server.held)
        capture.stop(0.3)
        assert wait_until(lambda: not _ffmpeg_children(nobody), 5), _ffmpeg_children(nobody)
    finally:
        server.close()
