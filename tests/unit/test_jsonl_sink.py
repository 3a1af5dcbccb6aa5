"""The JSON lines sink never raises into the audio loop: a line that cannot be written (a full disk, a closed
stream) is dropped, counted in health() and logged once; writing resumes by itself, and a line the disk cut short
costs that line only."""

from __future__ import annotations

import errno
import io
import json
import logging
from pathlib import Path

from edge.core.events import Event
from edge.sinks.jsonl import JsonLinesSink

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "event_v1.json"


def event(n: int) -> Event:
    payload = dict(json.loads(GOLDEN.read_text()), event_id=f"{n:032x}")
    return Event(**{k: payload[k] for k in Event.__dataclass_fields__ if k in payload})


class Disk:
    """A file on a disk that fills up: `room` bytes go in (a write that does not fit is cut short there, the next
    one fails with ENOSPC), until free() makes room again."""

    def __init__(self, room: int):
        self.data = bytearray()
        self.room = room

    def write(self, b) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = min(len(b), self.room)
        self.data += bytes(b[:n])
        self.room -= n
        return n

    def free(self) -> None:
        self.room = 1 << 30

    def close(self) -> None:
        pass


def test_a_full_disk_drops_and_counts_lines_logs_once_and_writing_resumes(tmp_path, caplog):
    sink = JsonLinesSink(str(tmp_path / "events.jsonl"))
    sink.start()
    first = len(event(0).to_json()) + 1
    disk = sink._file = Disk(room=first + 10)  # the second line is cut short after 10 bytes
    with caplog.at_level(logging.INFO, "edge.sinks.jsonl"):
        for n in range(5):
            sink.publish_event(event(n))
        h = sink.health()
        assert (h["jsonl_written"], h["jsonl_dropped"]) == (1, 4) and "No space" in h["jsonl_problem"]
        disk.free()
        for n in range(5, 8):
            sink.publish_event(event(n))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot write event lines" in errors[0].getMessage()
    assert any("writing event lines again, 4 dropped" in r.getMessage() for r in caplog.records)
    assert sink.health() == {"jsonl_written": 4, "jsonl_dropped": 4, "jsonl_problem": ""}
    lines = disk.data.decode().split("\n")
    readable = [json.loads(line)["event_id"] for line in lines if line.startswith("{") and line.endswith("}")]
    assert readable == [f"{n:032x}" for n in (0, 5, 6, 7)]  # the cut line is a line of its own, nothing else lost
    assert len([line for line in lines if line]) == 5


def test_a_closed_stream_is_a_dropped_line_not_an_exception():
    stream = io.StringIO()
    sink = JsonLinesSink(stream=stream)
    stream.close()
    sink.publish_event(event(1))
    assert sink.health()["jsonl_dropped"] == 1 and sink.health()["jsonl_written"] == 0
