"""A network stream (RTSP, HTTP, RTMP, SRT, ... anything ffmpeg reads) decoded by a supervised ffmpeg into 16 kHz
mono S16_LE on a pipe.

Each open() starts one ffmpeg (an old one still there is killed first); read() takes its stdout, and a small
daemon thread drains its stderr into the last few lines, so a chatty ffmpeg never blocks on a full pipe. When
ffmpeg exits (the stream ended, the server went away, the network timed out), read() raises SourceLost with one
line: the source, ffmpeg's exit status and its most telling stderr line, credentials blanked. A refused login or a
host that refuses, times out or cannot be resolved before any audio came asks the capture thread for a slow retry
(`retry_after` = reopen_max_seconds); anything else takes the normal backoff.

ffmpeg lives in its own session (a Ctrl-C at the terminal is the daemon's to handle). The daemon's stop closes
it; a daemon killed with SIGKILL leaves it to die of SIGPIPE at its next write (within stall_seconds at most: a
stream that sends nothing times out). PR_SET_PDEATHSIG is not used: it fires when the *thread* that started the
child exits, and capture threads are replaced after a stall; and preexec_fn is unsafe in a threaded process.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import threading
import time

import numpy as np

from ..config import AudioConfig
from ..core.errors import ConfigError
from ..core.names import redacted
from .capture import SourceLost

RATE_HZ, CHANNELS = 16000, 1
TAIL_LINES = 20  # stderr lines kept
MAX_LINE_BYTES = 4096
KILL_AFTER_SECONDS = 1.0  # SIGTERM, then SIGKILL

LOGIN = re.compile(r"(?i)(?:returned|failed:?|error) 40[13]\b|unauthori[sz]ed|forbidden|authori[sz]ation failed|"
                   r"access denied")
UNREACHABLE = re.compile(r"(?i)connection refused|timed out|no route to host|network is unreachable|"
                         r"host is unreachable|failed to resolve|name or service not known|"
                         r"temporary failure in name resolution|name resolution")
# lines that only repeat that something failed: chosen only when nothing else was said
GENERIC = re.compile(r"(?i)input/output error|conversion failed|error opening input|exiting normally|"
                     r"error while decoding|^\s*$")
CONTEXT = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")  # ffmpeg's "[tcp @ 0x55...] " prefix


def timeout_options(url: str, seconds: float) -> list[str]:
    """ffmpeg 5.1's network timeout for this URL's protocol, in microseconds: RTSP's own -timeout (rw_timeout
    does not reach its socket), rw_timeout for everything read through ffmpeg's I/O layer (http, rtmp, tcp,
    srt, udp, ...); none for raw rtp (no such option)."""
    scheme = url.split(":", 1)[0].lower()
    usec = str(max(1, round(seconds * 1e6)))
    if scheme in ("rtsp", "rtsps"):
        return ["-rtsp_transport", "tcp", "-timeout", usec]
    if scheme == "rtp":
        return []
    return ["-rw_timeout", usec]


def ffmpeg_command(program: str, url: str, timeout_s: float) -> list[str]:
    return [program, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", *timeout_options(url, timeout_s),
            "-i", url, "-vn", "-ac", str(CHANNELS), "-ar", str(RATE_HZ), "-f", "s16le", "-"]


def telling_line(lines, url: str) -> tuple[str, str]:
    """(ffmpeg's most telling stderr line, what it says: 'login', 'unreachable' or ''), credentials redacted.
    A refused login outranks a failed connection, which outranks any other line; a generic 'Input/output error'
    is chosen only when nothing else was said. The URL ffmpeg starts its lines with is dropped (the source's
    name says it)."""
    cleaned = []
    for line in lines:
        line = CONTEXT.sub("", line.strip())
        if url and line.startswith(url + ":"):
            line = line[len(url) + 1:].strip()
        if line:
            cleaned.append(line)
    for kind, pattern in (("login", LOGIN), ("unreachable", UNREACHABLE)):
        hits = [line for line in cleaned if pattern.search(line)]
        if hits:
            return redacted(hits[-1], url), kind
    specific = [line for line in cleaned if not GENERIC.search(line)]
    pick = (specific or cleaned or [""])[-1]
    return redacted(pick, url), ""


def exit_words(status: int | None) -> str:
    if status is None:
        return "ffmpeg stopped sending"
    if status < 0:
        return f"ffmpeg was killed by signal {-status}"
    return f"ffmpeg exited with status {status}"


def lost(name: str, url: str, status: int | None, lines, got_audio: bool, ran_s: float, timeout_s: float,
         slow_s: float) -> SourceLost:
    """The SourceLost for an ffmpeg that is gone: one line, no credentials; `retry_after` set for a refused login
    or a host that did not answer (only before any audio came: a stream that drops after playing is reopened at
    the normal pace). `ran_s`: how long ffmpeg ran; one that sent nothing for the whole network timeout did not
    answer (RTSP then says only 'Invalid data found', the server having accepted the connection)."""
    line, kind = telling_line(lines, url)
    if not got_audio and not kind and ran_s >= timeout_s * 0.9 and (status or 0) > 0:
        kind, line = "unreachable", f"no answer within {timeout_s:g} s" + (f" ({line})" if line else "")
    if got_audio and kind == "unreachable":
        kind = ""
    text = f"{name}: {exit_words(status)}"
    if line:
        text += f": {line}"
    elif status == 0:
        text += " (the stream ended)"
    if kind == "login":
        text += f"; the login was refused (check the user and password in the url): retrying every {slow_s:g} s"
    elif kind == "unreachable":
        text += f"; the host cannot be reached: retrying every {slow_s:g} s"
    exc = SourceLost(text)
    if kind:
        exc.retry_after = slow_s
    return exc


class _Ffmpeg:
    """One ffmpeg process: its stdout read by the capture thread (which closes it: a descriptor closed under a
    blocked read could be reused by the next process's pipe), its stderr drained by a daemon thread."""

    def __init__(self, argv: list[str], frames: int):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.started = time.monotonic()
        self.tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
        self.got_audio = False
        self._buf = bytearray(frames * CHANNELS * 2)
        self._view = memoryview(self._buf)
        self._carry = 0
        self._lock = threading.Lock()
        self._reading = self._stopped = False
        self._drain = threading.Thread(target=self._drain_stderr, name="ffmpeg-stderr", daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        err = self.proc.stderr
        try:
            for raw in iter(lambda: err.readline(MAX_LINE_BYTES), b""):
                self.tail.append(raw.decode("utf-8", "replace").rstrip())
        except (OSError, ValueError):
            pass
        finally:
            err.close()

    def read(self) -> np.ndarray | None:
        """The next chunk of whole frames; None when ffmpeg closed its output (or the process was stopped)."""
        with self._lock:
            out = self.proc.stdout
            if out is None or out.closed:
                return None
            self._reading = True
        try:
            n = os.readv(out.fileno(), [self._view[self._carry:]])
        except OSError:
            n = 0
        finally:
            with self._lock:
                self._reading = False
        if not n or self._stopped:
            self._close_stdout()
            return None
        total = self._carry + n
        usable = total - total % (2 * CHANNELS)
        chunk = np.frombuffer(self._buf, "<i2", usable // 2).copy()
        self._carry = total - usable
        if self._carry:
            self._buf[:self._carry] = self._buf[usable:total]
        if usable:
            self.got_audio = True
        return chunk

    def _close_stdout(self) -> None:
        with self._lock:
            if not self._reading and self.proc.stdout is not None:
                self.proc.stdout.close()

    def stop(self) -> None:
        """SIGTERM, SIGKILL after KILL_AFTER_SECONDS, reaped; the pipes closed (stdout by its reader if one is
        blocked in it: it returns at once, ffmpeg being gone)."""
        self._stopped = True
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(KILL_AFTER_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_stdout()
        self._drain.join(KILL_AFTER_SECONDS)

    def finish(self) -> int | None:
        """After the end of its output: the exit status (the process reaped, the stderr tail complete)."""
        try:
            self.proc.wait(KILL_AFTER_SECONDS)
        except subprocess.TimeoutExpired:
            self.stop()
        self._drain.join(KILL_AFTER_SECONDS)
        return self.proc.returncode


class UrlSource:
    """A network stream through ffmpeg, at 16 kHz mono (ffmpeg resamples and downmixes). Its name is
    cfg.describe(): the URL without credentials."""

    def __init__(self, cfg: AudioConfig):
        program = shutil.which(cfg.ffmpeg)
        if program is None:
            raise ConfigError(f"ffmpeg = {cfg.ffmpeg!r}, the program that decodes {cfg.describe()}, is not installed "
                              "(apt install ffmpeg, or set ffmpeg to the path of one)")
        self.cfg = cfg
        self.program = program
        self.name = cfg.describe()
        self.rate_hz, self.channels = RATE_HZ, CHANNELS
        self.overruns = 0
        # close() from another thread ends a read blocked on a silent stream (ffmpeg stopped: the pipe ends), so the
        # daemon's stop closes it rather than leave ffmpeg to its network timeout
        self.close_unblocks = True
        self._run: _Ffmpeg | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        with self._lock:
            old, self._run = self._run, None
        if old is not None:
            old.stop()
        argv = ffmpeg_command(self.program, self.cfg.url, self.cfg.stall_seconds)
        try:
            run = _Ffmpeg(argv, self.cfg.period_frames)
        except OSError as exc:
            raise SourceLost(f"{self.name}: cannot start {self.program}: {redacted(str(exc), self.cfg.url)}") \
                from None
        with self._lock:
            old, self._run = self._run, run
        if old is not None:  # another thread opened meanwhile: keep the newest
            old.stop()

    def read(self) -> np.ndarray:
        run = self._run
        if run is None:
            raise SourceLost(f"{self.name}: not open")
        chunk = run.read()
        if chunk is not None:
            return chunk
        status = run.finish()
        cfg = self.cfg
        raise lost(self.name, cfg.url, status, list(run.tail), run.got_audio, time.monotonic() - run.started,
                   cfg.stall_seconds, cfg.reopen_max_seconds)

    def close(self) -> None:
        with self._lock:
            run, self._run = self._run, None
        if run is not None:
            run.stop()
