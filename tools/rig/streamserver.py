"""A network audio stream on loopback: ffmpeg itself serving a WAV recording over HTTP (`-listen 1`), as a camera
or an internet radio would serve its audio, for the url source's tests and daemon tests.

    with StreamServer(wav) as server:            # listening on a free 127.0.0.1 port when the block starts
        source_url = server.url                   # http://127.0.0.1:PORT/stream.nut
        server.wait_client()                      # a reader connected: the recording is playing
        server.kill()                             # the server dies mid-stream (SIGKILL)
        server.start()                            # back, on the same port and URL

One client per run: ffmpeg serves the one client that connects, then exits (after the recording, or when the
client goes). start() again for the next client. The file is played at real time (`realtime`, ffmpeg -re) or as
fast as the reader takes it, once or forever (`loop`). The samples go out as they are (pcm_s16le) in a NUT
container (`container`): a reader's ffmpeg starts decoding it within 0.1 s, where a WAV container costs 2 s at
16 kHz (its demuxer reads 64 KiB ahead to look for S/PDIF data) and about 5.5 s with ffmpeg's default probing. Nothing here connects to the port to see whether it
listens (that would be the one client): the kernel's socket table (/proc/net/tcp) says so.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from .ports import RigError, free_port, have, stop_process, wait_until

LISTEN, ESTABLISHED = "0A", "01"  # socket states in /proc/net/tcp


def socket_states(port: int) -> list[str]:
    """The states of the IPv4 loopback sockets whose local port is `port` (LISTEN, ESTABLISHED, ...)."""
    states = []
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            local, state = fields[1], fields[3]
            if local == f"0100007F:{port:04X}":
                states.append(state)
    return states


class StreamServer:
    """ffmpeg serving `wav_path` at http://127.0.0.1:port/stream.<container> (the port free, or the one given)."""

    def __init__(self, wav_path: Path | str, realtime: bool = True, loop: bool = False, port: int = 0,
                 container: str = "nut", ffmpeg: str = "ffmpeg"):
        if not have(ffmpeg):
            raise RigError(f"{ffmpeg} is not installed (sudo apt-get install ffmpeg; make sysdeps installs it)")
        self.wav_path = Path(wav_path)
        if not self.wav_path.is_file():
            raise RigError(f"{self.wav_path}: no such recording")
        self.realtime, self.loop, self.container, self.ffmpeg = realtime, loop, container, ffmpeg
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/stream.{container}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0  # how many times it was started
        self._log = None

    def command(self) -> list[str]:
        pace = ["-re"] if self.realtime else []
        repeat = ["-stream_loop", "-1"] if self.loop else []
        return [self.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", *pace, *repeat,
                "-i", str(self.wav_path), "-vn", "-c:a", "pcm_s16le", "-f", self.container, "-listen", "1", self.url]

    def start(self, timeout_s: float = 10.0) -> StreamServer:
        """Serve (again, after kill() or after the last client left) on the same port; returns once it listens."""
        if self.alive:
            raise RigError(f"the stream server on port {self.port} is already running")
        self._close_log()
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._log)
        self.starts += 1
        if not wait_until(lambda: LISTEN in socket_states(self.port) or self.proc.poll() is not None, timeout_s) \
                or self.proc.poll() is not None:
            why = self.log_text() or f"exit status {self.proc.poll()}"
            self.stop()
            raise RigError(f"the stream server did not listen on 127.0.0.1:{self.port}: {why}")
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_client(self, timeout_s: float = 10.0) -> None:
        """Until a reader is connected (the recording is being served)."""
        if not wait_until(lambda: LISTEN not in socket_states(self.port) and ESTABLISHED in socket_states(self.port),
                          timeout_s):
            raise RigError(f"no client connected to the stream server on port {self.port} within {timeout_s:g} s")

    def wait_done(self, timeout_s: float = 60.0) -> int:
        """Until the server exits (the recording served, or the client gone); its exit status."""
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise RigError(f"the stream server on port {self.port} still runs after {timeout_s:g} s") from None

    def kill(self) -> None:
        """A crash: SIGKILL mid-stream; the client sees its connection end."""
        if self.alive:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self._close_log()

    def log_text(self) -> str:
        """What the server wrote to stderr in its current (or last) run."""
        if self._log is None:
            return ""
        fd = self._log.fileno()  # pread: the server shares (and moves) the file offset
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace").strip()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> StreamServer:
        if not self.alive:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
