"""The clips folder (one flat folder): a kept clip is `<event_id>.<flac|opus|wav>` and its record `<event_id>.json`;
a withheld or skipped clip is its record alone. The record is the commit: audio renamed into place, then the record
(`.<event_id>.json.tmp`, fsynced, renamed), then the folder fsynced; audio without a record is a leftover. Deleting
goes the other way: audio, then record. One writer thread uses a store; stats() may be read from another thread;
a reader (the CLI) calls load(), which creates and deletes nothing, instead of open(). The index is kept in memory:
the folder is read once. Retention (ClipParams): clips older than max_age_days go, but not a label's min_per_label
newest; while the audio is over max_total_mb the oldest clip not so protected goes; while the file system has less
than min_free_mb free the oldest goes, protected or not (the event spool shares the disk and comes first). Records
without audio weigh nothing for size, go by age alone, and are the first to go when free space is short."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.clipparams import CLIP_FORMATS, ClipParams
from ..core.files import MIB, commit_file, file_sha256, size_text

log = logging.getLogger("edge.clips")

FIELDS = ("event_id", "label", "status", "file", "start_ts")  # a record without one of them is unreadable
EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")  # a file name's stem: no dot, no slash
RECORD_LIMIT = 64 * 1024  # a record file larger than this is unreadable
RECORD_ROOM = 8 * 1024  # what room_for adds to a clip's bytes: its record and the record's temporary file
DAY = 86400.0


def valid_record(record: object, stem: str | None = None) -> bool:
    """Whether `record` (parsed from `<stem>.json`) has the fields a store relies on, and names only its own audio
    file: `<event_id>.<flac|opus|wav>` or null (a record naming another file would have it deleted with it)."""
    if not isinstance(record, dict) or any(k not in record for k in FIELDS):
        return False
    eid, start, file = record["event_id"], record["start_ts"], record["file"]
    return (isinstance(eid, str) and bool(EVENT_ID.match(eid)) and stem in (None, eid)
            and isinstance(start, (int, float)) and not isinstance(start, bool) and math.isfinite(start)
            and isinstance(record["label"], str) and isinstance(record["status"], str)
            and (file is None or file in {f"{eid}.{ext}" for ext in CLIP_FORMATS}))


@dataclass
class Entry:
    """A record in the index: its audio file's name (None: a record alone), size and room taken on disk."""
    record: dict
    audio: str | None
    nbytes: int = 0  # the audio's size
    disk: int = 0  # blocks the audio and the record take (what deleting them frees)


def _disk(*paths: Path | None) -> int:
    """Bytes the files take on disk (what deleting them frees)."""
    return sum(p.lstat().st_blocks * 512 for p in paths if p is not None and p.exists())


def _free(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def _parse(path: Path) -> object:
    """A record file's JSON; None when it is too long or not JSON."""
    with open(path, "rb") as f:
        data = f.read(RECORD_LIMIT + 1)
    try:
        return None if len(data) > RECORD_LIMIT else json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; RecursionError: nested too deep
        return None


class ClipStore:
    """The clips folder, for one writer thread (open, room_for, commit, ...) or a reader (load, records, find)."""

    def __init__(self, folder: Path, params: ClipParams, clock=time.time):
        self.folder = Path(folder)
        self.params = params
        self.clock = clock
        self._index: dict[str, Entry] = {}
        self._lock = threading.Lock()  # the index, against stats() and the readers from another thread
        self.deleted = 0  # clips and records retention deleted since start
        self.unreadable = 0  # records found unreadable at open (deleted with their audio)
        self.leftovers = 0  # deleted at open: unfinished writes, audio without a record, records without their audio

    def open(self) -> str:
        """Create the folder (0o750), delete leftovers and unreadable records (with their audio), load the index,
        enforce retention. "" or one line saying why clips are off; never raises for OS errors."""
        try:
            if self.folder.exists() and not self.folder.is_dir():
                return f"clips folder {self.folder}: not a folder: clips are off"
            self.folder.mkdir(mode=0o750, parents=True, exist_ok=True)
            probe = self.folder / f".probe-{os.getpid()}.tmp"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            probe.unlink()
            self._read_folder(clean=True)
            self.enforce()
        except OSError as exc:
            return f"clips folder {self.folder}: {exc.strerror or exc}: clips are off"
        return ""

    def load(self) -> str:
        """The index alone, for a reader while a daemon may be writing: nothing created or deleted (an unreadable
        record or a leftover is passed over). "" or one line when the folder cannot be read."""
        try:
            self._read_folder(clean=False)
        except OSError as exc:
            return f"clips folder {self.folder}: {exc.strerror or exc}"
        return ""

    def _read_folder(self, clean: bool) -> None:
        audio: dict[str, int] = {}
        records: list[str] = []
        with os.scandir(self.folder) as it:
            for e in it:
                if not e.is_file(follow_symlinks=False):
                    continue
                if e.name.startswith("."):
                    if clean and e.name.endswith(".tmp"):
                        (self.folder / e.name).unlink(missing_ok=True)
                        self.leftovers += 1
                elif e.name.endswith(".json"):
                    records.append(e.name)
                elif e.name.rpartition(".")[2] in CLIP_FORMATS:
                    audio[e.name] = e.stat(follow_symlinks=False).st_size
        bad = self._load_records(records, audio, clean)
        if not clean:
            return
        for name in bad + list(audio):  # the unreadable records, then the audio no record names (theirs among it)
            (self.folder / name).unlink(missing_ok=True)
        self.unreadable += len(bad)
        self.leftovers += len(audio)
        if bad:
            shown = ", ".join(sorted(bad)[:5]) + (", ..." if len(bad) > 5 else "")
            log.warning("clips: deleted %d unreadable clip records and their audio (%s)", len(bad), shown)
        if audio:
            log.info("clips: deleted %d audio files without a readable record", len(audio))

    def _load_records(self, names: list[str], audio: dict[str, int], clean: bool) -> list[str]:
        """Index the readable records (taking their audio out of `audio`); the unreadable ones' names back."""
        bad, index = [], {}
        for name in names:
            stem, path = name[:-len(".json")], self.folder / name
            record = _parse(path)
            if not valid_record(record, stem):
                bad.append(name)
                continue
            file = record["file"]
            if file is not None and file not in audio:  # its deletion was cut short, or someone removed the audio
                if clean:
                    path.unlink(missing_ok=True)
                    self.leftovers += 1
                    continue
                file = None
            audio_path = self.folder / file if file else None
            index[stem] = Entry(record, file, audio.pop(file, 0) if file else 0, _disk(path, audio_path))
        with self._lock:
            self._index = index
        return bad

    def temp_path(self, event_id: str, ext: str) -> Path:
        if not EVENT_ID.match(event_id) or ext not in CLIP_FORMATS:
            raise ValueError(f"no clip file for event id {event_id!r} and format {ext!r}")
        return self.folder / f".{event_id}.{ext}.tmp"

    def discard(self, temp_audio: Path) -> None:
        Path(temp_audio).unlink(missing_ok=True)

    def room_for(self, nbytes: int) -> bool:
        """Make room for a clip of about `nbytes` (retention, then the oldest clips for min_free_mb plus the clip
        and its record); False when it cannot fit even so: then clips are deleted only as min_free_mb alone asks."""
        self._by_age()
        self._by_size(nbytes)
        return self._by_free(max(0, nbytes) + RECORD_ROOM)

    def commit(self, record: dict, temp_audio: Path | None) -> dict:
        """Rename the (fsynced) temp_audio into place, write the record beside it, fsync the folder; index it and
        enforce retention. The record as stored back (with file, format, bytes, sha256, written_ts). OSError
        propagates, with neither the audio nor the record left behind when the record could not be written."""
        rec = dict(record)
        eid = rec.get("event_id")
        audio = None
        if temp_audio is not None:
            ext = Path(temp_audio).name.removesuffix(".tmp").rpartition(".")[2]
            if not isinstance(eid, str) or Path(temp_audio) != self.temp_path(eid, ext):
                raise ValueError(f"{temp_audio} is not the temporary audio of event {eid!r}")
            audio = self.folder / f"{eid}.{ext}"
            rec.update(file=audio.name, format=ext, bytes=os.stat(temp_audio).st_size)
            rec["sha256"] = rec.get("sha256") or file_sha256(temp_audio)[0]
        else:
            rec.update(file=None, format=None, bytes=rec.get("bytes", 0), sha256=rec.get("sha256"))
        rec["written_ts"] = self.clock()
        if not valid_record(rec):
            raise ValueError(f"not a clip record: {sorted(rec)}")
        if audio is not None:
            os.replace(temp_audio, audio)
        path = self._write_record(rec, audio)
        self._replace(Entry(rec, rec["file"], rec["bytes"] if audio else 0, _disk(path, audio)))
        self.enforce()
        return dict(rec)

    def _write_record(self, rec: dict, audio: Path | None) -> Path:
        """The record as .<event_id>.json.tmp, fsynced, renamed, the folder fsynced; when it did not land, the
        audio renamed before it is deleted (a leftover otherwise) with the temporary file."""
        path = self.folder / f"{rec['event_id']}.json"
        tmp = self.folder / f".{path.name}.tmp"
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "w") as f:
                f.write(json.dumps(rec, sort_keys=True))
            commit_file(tmp, path)  # fsync, rename, fsync the folder
        except OSError:
            if tmp.exists() or not path.exists():
                tmp.unlink(missing_ok=True)
                if audio is not None:
                    audio.unlink(missing_ok=True)
            raise
        return path

    def _replace(self, entry: Entry) -> None:
        eid = entry.record["event_id"]
        with self._lock:
            old = self._index.get(eid)
            self._index[eid] = entry
        if old is not None and old.audio and old.audio != entry.audio:
            (self.folder / old.audio).unlink(missing_ok=True)

    def enforce(self) -> int:
        """Retention now (age, size, free space); how many clips and records it deleted."""
        before = self.deleted
        self._by_age()
        self._by_size(0)
        self._by_free(0)
        return self.deleted - before

    def _entries(self) -> list[Entry]:
        """Oldest first."""
        with self._lock:
            return sorted(self._index.values(), key=lambda e: (e.record["start_ts"], e.record["event_id"]))

    def _protected(self, entries: list[Entry]) -> set[str]:
        """The event ids of each label's min_per_label newest clips (with audio)."""
        left: dict[str, int] = {}
        kept = set()
        for e in reversed(entries):
            if e.audio and left.setdefault(e.record["label"], self.params.min_per_label) > 0:
                left[e.record["label"]] -= 1
                kept.add(e.record["event_id"])
        return kept

    def _by_age(self) -> None:
        if self.params.max_age_days <= 0:
            return
        cutoff = self.clock() - self.params.max_age_days * DAY
        entries = self._entries()
        keep = self._protected(entries)
        old = [e for e in entries if e.record["start_ts"] < cutoff and e.record["event_id"] not in keep]
        self._delete(old, "older than max_age_days")

    def _by_size(self, extra: int) -> None:
        limit = self.params.max_total_mb * MIB
        if limit <= 0:
            return
        entries = self._entries()
        keep = self._protected(entries)
        total = sum(e.nbytes for e in entries) + max(0, extra)
        victims = []
        for e in entries:
            if total <= limit:
                break
            if e.audio and e.record["event_id"] not in keep:
                victims.append(e)
                total -= e.nbytes
        self._delete(victims, "over max_total_mb")

    def _by_free(self, extra: int) -> bool:
        """Delete records without audio, then the oldest clips, while free space is under min_free_mb + extra
        (under min_free_mb alone when deleting them all would not make room for `extra`)."""
        floor = int(self.params.min_free_mb * MIB)
        if floor + extra <= 0:
            return True
        free = _free(self.folder)
        entries = self._entries()
        order = [e for e in entries if not e.audio] + [e for e in entries if e.audio]
        need = floor + extra if free + sum(e.disk for e in order) >= floor + extra else floor
        victims = []
        for e in order:
            if free >= need:
                break
            victims.append(e)
            free += e.disk
        self._delete(victims, "under min_free_mb")
        return free >= floor + extra

    def _delete(self, victims: list[Entry], reason: str) -> None:
        """Each clip's audio, then its record; one log line for the lot."""
        for e in victims:
            if e.audio:
                (self.folder / e.audio).unlink(missing_ok=True)
            (self.folder / f"{e.record['event_id']}.json").unlink(missing_ok=True)
            with self._lock:
                self._index.pop(e.record["event_id"], None)
            self.deleted += 1
        if victims:
            clips = [e for e in victims if e.audio]
            alone = len(victims) - len(clips)
            text = f"{len(clips)} clips ({size_text(sum(e.nbytes for e in clips))})" if clips else ""
            text += (" and " if text and alone else "") + (f"{alone} records without audio" if alone else "")
            log.info("clips: retention deleted %s: %s", text, reason)

    def records(self) -> list[dict]:
        """Every record, kept and withheld, newest first (by start_ts)."""
        return [dict(e.record) for e in reversed(self._entries())]

    def find(self, prefix: str) -> dict | None:
        """The record whose event_id is `prefix` or starts with it; None when none does; ValueError when several."""
        with self._lock:
            if prefix in self._index:
                return dict(self._index[prefix].record)
            found = sorted(eid for eid in self._index if prefix and eid.startswith(prefix))
            if len(found) > 1:
                raise ValueError(f"{prefix!r} matches {len(found)} clips: {', '.join(found[:5])}"
                                 + (", ..." if len(found) > 5 else ""))
            return dict(self._index[found[0]].record) if found else None

    def path_of(self, record: dict) -> Path | None:
        """The clip's audio file; None for a record without audio (withheld, skipped) or whose audio is gone."""
        if not valid_record(record) or record["file"] is None:
            return None
        path = self.folder / record["file"]
        return path if path.is_file() else None

    def stats(self) -> dict:
        with self._lock:
            kept = [e for e in self._index.values() if e.audio]
            withheld = len(self._index) - len(kept)
        try:
            free = round(_free(self.folder) / MIB, 1)
        except OSError:
            free = None
        return {"clips_kept": len(kept), "clips_bytes": sum(e.nbytes for e in kept), "clips_deleted": self.deleted,
                "clips_withheld": withheld, "clips_free_mb": free}
