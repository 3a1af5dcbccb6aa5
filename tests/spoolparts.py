"""What the spool tests share: events as the sink queues them, a small file system (tmpfs) to fill, and the outbox in
a child process that can be killed at any moment (a crash leaves the spool as a real one would)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.core.events import Event
from tools import REPO

EVENTS_TOPIC = "edge-audio/pi/events"


def event(i: int, kind: str = "start", label: str = "Dog"):
    """(Message, payload dict) for event `i`: what MqttSink.publish_event hands the outbox."""
    from edge.sinks.outbox import Message
    start = 1000.0 + i
    e = Event(kind, f"id{i}", label, 74, start, start + 2.0 if kind == "end" else None, 0.9, 0.7,
              2.0 if kind == "end" else 0.0, -20.0, "pi", "yamnet", "cpu")
    payload = e.to_dict()
    return Message(EVENTS_TOPIC, e.to_json(payload), qos=1), payload


def rows(spool: Path) -> list[tuple[str, str]]:
    """(event_id, type) of the spool's outbox rows, in order, read by another connection."""
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
    try:
        return [(p["event_id"], p["type"]) for (text,) in db.execute("SELECT payload FROM outbox ORDER BY seq")
                for p in [json.loads(text)]]
    finally:
        db.close()


@contextlib.contextmanager
def small_fs(folder: Path, size: str = "256k"):
    """A tmpfs of `size` mounted on `folder` (made if need be) for the block; unmounted after it whatever happens.
    Skips the test, with the reason, where mounting is not permitted (not root, or a container without the
    capability); `make test` prints every skip's reason (-rs), so such a skip is never a quiet one."""
    folder.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """A file that takes every free block of `folder`'s file system; delete it to free them."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"\0" * 4096
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    break
                block = block[:len(block) // 2]
    finally:
        os.close(fd)
    return filler


def remount(folder: Path, mode: str) -> None:
    """The tmpfs on `folder` remounted 'ro' or 'rw'."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


CHILD = r"""
import json, logging, sys
sys.path.insert(0, sys.argv[2])
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
from spoolparts import event
from edge.sinks.outbox import Outbox
box = Outbox(1000, "drop_oldest", sys.argv[1])
box.open()
note = ""
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "append":
        box.append(*event(int(args[0]), args[1], args[2]))
    elif cmd == "deliver":
        for _ in range(int(args[0])):
            box.remove_head(box.head())
    elif cmd == "set_aside":
        box.set_aside(box.head(), " ".join(args))
    elif cmd == "close":
        note = box.shutdown_note()
        box.close()
    print(json.dumps({"queued": len(box), "unwritten": box.unwritten, "lost": box.lost, "problem": box.problem,
                      "note": note}), flush=True)
"""


class SpoolChild:
    """The outbox on `spool` in a child process: do("append 3 start Dog"), do("deliver 2"), do("set_aside why"),
    do("close") each return the outbox's figures once done; kill() is SIGKILL."""

    def __init__(self, spool: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(spool), str(Path(__file__).parent)],
                                     cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))

    def do(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the child died: {self.proc.stderr.read()}")
        return json.loads(line)

    def kill(self) -> str:
        """SIGKILL; its log."""
        self.proc.kill()
        self.proc.wait(10)
        log = self.proc.stderr.read()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        return log


class WalWatch:
    """The largest size the spool's write-ahead log reached while watched (a thread looks every millisecond):
    with watch: ...; then .largest."""

    def __init__(self, spool: Path):
        import threading
        self.path = str(spool) + "-wal"
        self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            with contextlib.suppress(OSError):
                self.largest = max(self.largest, os.path.getsize(self.path))

    def __enter__(self) -> "WalWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
