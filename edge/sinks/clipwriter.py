"""The clip writer: one thread that encodes and stores clips, so the audio loop never waits on a disk or a codec.

The loop hands it audio in blocks taken from a fixed pool (queue_seconds of 16 kHz audio in all); when the pool
is empty the writer is behind, and the clip that needed a block is skipped and counted, never the audio. Each
clip is written to a temporary file, fsynced and renamed, and its record (edge/sinks/clipstore.py) is the
commit: a kill or power cut leaves no partial clip a reader could list or send. FLAC or Opus through soundfile
(its wheels carry libsndfile), WAV through the standard library when soundfile is absent or asked for.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import wave
from pathlib import Path

import numpy as np

from ..core.clipparams import ClipParams
from ..core.files import file_sha256
from .clipstore import ClipStore

log = logging.getLogger("edge.clips")
BLOCK = 4000  # samples per block: a quarter second at 16 kHz
RATE = 16000
# a clip's size before it is written, as a share of its 16-bit PCM size (room is made for it first)
SIZE_SHARE = {"wav": 1.0, "flac": 1.0, "opus": 0.25}
SKIPPED_QUEUE = "skipped: queue full"
OFF = "skipped: clips are off"  # the folder could not be written (said once; metrics' clips_problem says why)


def clip_format(wanted: str) -> tuple[str, str]:
    """(the format clips are written in, why it is not the one asked for or '')."""
    if wanted == "wav":
        return "wav", ""
    try:
        import soundfile  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: the wheel's libsndfile cannot load
        return "wav", f"clips.format = {wanted!r} needs soundfile ({exc.__class__.__name__}): writing WAV " \
                      "(pip install 'edge-audio[clips]')"
    return wanted, ""


class _Encoder:
    """One clip's file being written."""

    def __init__(self, path: Path, fmt: str):
        self.path = path
        if fmt == "wav":
            self._wav = wave.open(str(path), "wb")
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(RATE)
            self._sf = None
        else:
            import soundfile
            kind, subtype = ("FLAC", "PCM_16") if fmt == "flac" else ("OGG", "OPUS")
            self._sf = soundfile.SoundFile(str(path), "w", RATE, 1, subtype, format=kind)
            self._wav = None

    def write(self, samples: np.ndarray) -> None:
        if self._sf is not None:
            self._sf.write(samples)
        else:
            self._wav.writeframes(samples.astype("<i2", copy=False).tobytes())

    def close(self) -> None:
        (self._sf or self._wav).close()


class ClipWriter:
    """The audio loop's side never blocks: begin(), block(), audio(), finish(), withhold(), results()."""

    def __init__(self, store: ClipStore, params: ClipParams, fmt: str):
        self.store = store
        self.params = params
        self.fmt = fmt
        count = max(8, int(params.queue_seconds * RATE) // BLOCK)
        self.pool = np.zeros((count, BLOCK), np.int16)
        self._free = collections.deque(range(count))
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._done: collections.deque = collections.deque()
        self._files: dict[str, _Encoder] = {}
        self._thread: threading.Thread | None = None
        self.problem = ""  # the clips folder cannot be written: clips are off
        self.written = self.withheld = self.skipped = 0  # written: the writer's count; the others the loop's
        self.skipped_disk = 0  # no room for a clip: the writer's count
        self._store_stats: dict = {}  # the folder's figures, as the writer thread last saw them

    # -- the audio loop's side ---------------------------------------------------------------------------------
    def start(self) -> str:
        self.problem = self.store.open()
        if self.problem:
            log.warning("%s", self.problem)
            return self.problem
        self._store_stats = self.store.stats()
        self._thread = threading.Thread(target=self._run, name="clips", daemon=True)
        self._thread.start()
        return ""

    def begin(self, event_id: str) -> None:
        self._jobs.put(("begin", event_id, None))

    def block(self) -> int | None:
        """A free block's index, or None: the writer is behind."""
        return self._free.popleft() if self._free else None

    def audio(self, event_id: str, index: int, size: int) -> None:
        self._jobs.put(("audio", event_id, (index, size)))

    def finish(self, event_id: str, record: dict) -> None:
        """The clip is whole: close, fsync, rename, commit `record` (completed with file, bytes, sha256)."""
        self._jobs.put(("finish", event_id, record))

    def drop(self, event_id: str, record: dict) -> None:
        """No clip after all (withheld, skipped): its partial file goes, its record stays. Counted now (the
        writer may be the reason)."""
        if record["status"].startswith("withheld"):
            self.withheld += 1
        else:
            self.skipped += 1
        self._jobs.put(("drop", event_id, record))

    def results(self) -> list[dict]:
        """The records of clips done since the last call (each with event_id and status)."""
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def stats(self) -> dict:
        """The metrics' clip figures: clips written, withheld and skipped since start, the folder's own, and
        the problem that turned clips off ('' while they work)."""
        return {**self._store_stats, "clips_written": self.written, "clips_withheld": self.withheld,
                "clips_skipped": self.skipped + self.skipped_disk, "clips_problem": self.problem}

    def stop(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._jobs.put(("stop", "", None))
            self._thread.join(timeout_s)

    # -- the writer thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            kind, event_id, arg = self._jobs.get()
            if kind == "stop":
                break
            try:
                self._job(kind, event_id, arg)
            except Exception as exc:  # a disk or codec failure: clips go off, events go on
                self._fail(exc)
                if kind in ("finish", "drop"):  # its end event waits for this answer
                    self._done.append({**arg, "status": OFF, "file": None})
            if kind == "audio":
                self._free.append(arg[0])
        for event_id in list(self._files):  # clips the daemon stopped before they were whole: none left behind
            self._discard(event_id)

    def _job(self, kind: str, event_id: str, arg) -> None:
        if self.problem:
            if kind in ("finish", "drop"):
                self._done.append({**arg, "status": OFF, "file": None})
            return
        if kind == "begin":
            self._begin(event_id)
        elif kind == "audio":
            enc = self._files.get(event_id)
            if enc is not None:
                enc.write(self.pool[arg[0], :arg[1]])
        elif kind == "finish":
            self._finish(event_id, arg)
        elif kind == "drop":
            self._discard(event_id)
            self._commit(arg, None)

    def _begin(self, event_id: str) -> None:
        most = self.params.max_seconds  # a clip's longest, pre-roll and post-roll included
        if not self.store.room_for(int(most * RATE * 2 * SIZE_SHARE[self.fmt])):
            return  # no file: its finish says "skipped: disk"
        self._files[event_id] = _Encoder(self.store.temp_path(event_id, self.fmt), self.fmt)

    def _finish(self, event_id: str, record: dict) -> None:
        enc = self._files.pop(event_id, None)
        if enc is None:
            self.skipped_disk += 1
            self._commit({**record, "status": "skipped: disk full", "file": None}, None)
            return
        enc.close()
        os.chmod(enc.path, 0o640)  # a recording of a home: the service and its group only
        digest, size = file_sha256(enc.path, fsync=True)  # and on disk
        self._commit({**record, "file": f"{event_id}.{self.fmt}", "format": self.fmt, "bytes": size,
                      "sha256": digest}, enc.path)

    def _commit(self, record: dict, temp: Path | None) -> None:
        stored = self.store.commit(record, temp)
        if temp is not None:
            self.written += 1
        self._store_stats = self.store.stats()
        self._done.append(stored)

    def _discard(self, event_id: str) -> None:
        enc = self._files.pop(event_id, None)
        if enc is not None:
            try:
                enc.close()
            except Exception:
                pass
            self.store.discard(enc.path)

    def _fail(self, exc: Exception) -> None:
        self.problem = f"clips folder {self.store.folder}: {getattr(exc, 'strerror', None) or exc}: clips are off"
        log.warning("%s", self.problem)
        for open_id in list(self._files):
            self._discard(open_id)


