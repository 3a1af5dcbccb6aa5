"""`edge-audio clips`: the clips the daemon kept around its detections ([clips], edge/sinks/clipstore.py) — a
table of them, and one of them played through ALSA, written out as WAV (or copied), or drawn as a log-mel
spectrogram with the kit's own front end (the model's 64 bands) and the event's span marked. The listing only
reads the records: it never cleans the folder a running daemon writes to."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from ..core.clipparams import ClipParams
from ..core.errors import InputError
from ..core.files import sha256_hex, size_text
from .command import add_command, say

PERIOD_FRAMES = 1024  # ALSA playback period
TURN_ON = "clips are off by default: [clips] enabled = true in the daemon's config turns them on"
PLOT_INSTALL = "pip install 'edge-audio[plot]'"


def clip_store(folder: Path):
    """The folder's clips (records(), find(prefix), path_of(record)), loaded without cleaning anything up: a
    running daemon may be writing to it. None when the folder does not exist."""
    from ..sinks.clipstore import ClipStore
    if not folder.is_dir():
        if folder.exists():
            raise InputError(f"{folder}: not a folder")
        return None
    store = ClipStore(folder, ClipParams())
    problem = store.load()
    if problem:
        raise InputError(problem)
    return store


def clips_folder_of(args) -> Path:
    """--folder, else the folder of --config's [clips], else the default one (clips/ in the state directory)."""
    folder, config = getattr(args, "folder", None), getattr(args, "config", None)
    if folder and config:
        raise InputError("--folder and --config: give one of them")
    if folder:
        return Path(folder)
    from ..config import clips_folder, load_config
    return clips_folder(load_config(config).clips if config else ClipParams())


def local_time(ts) -> str:
    """A unix time as local ISO time to the second; "?" for none."""
    try:
        return datetime.fromtimestamp(float(ts)).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def cmd_list(args) -> int:
    if args.limit < 0:
        raise InputError("--limit must not be negative (0: all)")
    folder = clips_folder_of(args)
    store = clip_store(folder)
    records = store.records() if store else []
    if not records:
        print(f"no clips in {folder} ({TURN_ON})", file=sys.stderr if args.json else sys.stdout)
        return 0
    chosen = [r for r in records if (args.label is None or r.get("label") == args.label)
              and (args.source is None or (r.get("source") or "") == args.source)]
    shown = chosen[:args.limit] if args.limit else chosen
    if not shown:
        asked = " and ".join(f"{k} {v!r}" for k, v in (("label", args.label), ("source", args.source)) if v is not None)
        print(f"no clips of {asked} in {folder} ({len(records)} in all)", file=sys.stderr if args.json else sys.stdout)
        return 0
    if args.json:
        for r in shown:
            print(json.dumps(r, sort_keys=True))
    else:
        for row in table(shown):
            print(row.rstrip())
    if len(shown) < len(chosen):
        say(f"{len(chosen) - len(shown)} older clips not shown (--limit 0 shows them all)", "edge-audio clips")
    return 0


def table(records: list[dict]) -> list[str]:
    """The listing's lines: a header, then one line per clip (the source column only when a clip has one)."""
    with_source = any(r.get("source") for r in records)
    head = ["TIME", "SOURCE", "LABEL", "SECONDS", "SIZE", "STATUS", "ID"]
    rows = [[local_time(r.get("event_start_ts", r.get("start_ts"))), r.get("source") or "-", str(r.get("label", "?")),
             f"{float(r.get('seconds') or 0):.1f}", size_text(int(r["bytes"])) if r.get("file") and r.get("bytes")
             else "-", str(r.get("status", "?")), str(r.get("event_id", ""))[:8]] for r in records]
    if not with_source:
        head, rows = head[:1] + head[2:], [row[:1] + row[2:] for row in rows]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [head, *rows]]


def the_clip(args) -> tuple[dict, Path]:
    """The record ID names and its audio file; InputError when there is none (unknown, ambiguous, no audio)."""
    folder = clips_folder_of(args)
    prefix = args.id.strip()
    if not prefix:
        raise InputError("an empty clip ID: give the first characters of one (edge-audio clips lists them)")
    store = clip_store(folder)
    try:
        record = store.find(prefix) if store else None
    except ValueError:
        raise InputError(f"clip ID {args.id!r} matches more than one clip in {folder}: give more of it") from None
    if record is None:
        raise InputError(f"no clip {args.id!r} in {folder} (edge-audio clips lists them)")
    when = local_time(record.get("event_start_ts", record.get("start_ts")))
    name = f"clip {str(record.get('event_id'))[:8]} ({record.get('label')}, {when})"
    path = store.path_of(record)
    if path is None and record.get("file"):
        raise InputError(f"{name}: its audio file {record['file']} is gone (the folder's age and size limits "
                         "remove clips)")
    if path is None:
        status = str(record.get("status") or "no audio")
        why = (" (speech was heard in it, and [clips] privacy = 'withhold' keeps no audio of people talking)"
               if status.startswith("withheld") else "")
        raise InputError(f"{name} has no audio: {status}{why}")
    return record, path


def read_clip(record: dict, path: Path) -> tuple[np.ndarray, int]:
    """The clip's samples (int16, mono) and rate; InputError for a damaged file."""
    digest = record.get("sha256")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the clip's audio ({exc.strerror or exc})") from None
    if digest and sha256_hex(blob) != digest:
        raise InputError(f"{path}: the audio file does not match its record (sha256 differs): it is damaged")
    try:
        import soundfile
    except ImportError:
        soundfile = None
    if soundfile is not None:
        try:
            data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
        except (RuntimeError, OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the clip's audio: {' '.join(str(exc).split())}") from None
    elif path.suffix.lower() == ".wav":
        from ..core.wavfile import read_wav
        wav = read_wav(path)  # AudioFormatError: one line, exit 2
        data, rate = wav.samples, wav.rate_hz
    else:
        raise InputError(f"reading a {path.suffix} clip needs the soundfile package: pip install 'edge-audio[device]'")
    if data.shape[0] == 0:
        raise InputError(f"{path}: the clip's audio file holds no samples")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1).round().astype(np.int16)
    return np.ascontiguousarray(mono, np.int16), int(rate)


def cmd_play(args) -> int:
    record, path = the_clip(args)
    samples, rate = read_clip(record, path)
    play(samples, rate, args.device, f"playing {str(record.get('event_id'))[:8]} ({record.get('label')}, "
                                     f"{len(samples) / rate:.1f} s) on '{args.device}'")
    return 0


def play(samples: np.ndarray, rate: int, device: str, note: str = "") -> None:
    """Play int16 mono samples on an ALSA PCM (saying `note` once it is open), waiting until they are played;
    InputError when it cannot."""
    try:
        import alsaaudio as a
    except ImportError:
        raise InputError("playing a clip needs pyalsaaudio: pip install 'edge-audio[device]'") from None
    from ..core.console import native_stderr_filtered
    try:
        with native_stderr_filtered(("ALSA lib ",)):  # alsa-lib's own line for what the error below says
            pcm = a.PCM(type=a.PCM_PLAYBACK, mode=a.PCM_NORMAL, device=device, channels=1, rate=rate,
                        format=a.PCM_FORMAT_S16_LE, periodsize=PERIOD_FRAMES, periods=4)
    except a.ALSAAudioError as exc:
        raise InputError(f"cannot open ALSA device '{device}' for playback: {exc} (aplay -L lists them)") from None
    try:
        got = int(pcm.info().get("rate", rate))
        if got != rate:
            raise InputError(f"ALSA device '{device}' plays at {got} Hz, not {rate}: use one that converts "
                             "(default, or plughw:CARD,DEV)")
        if note:
            say(note, "edge-audio clips")
        data = samples.astype("<i2").tobytes()
        for i in range(0, len(data), PERIOD_FRAMES * 2):
            pcm.write(data[i:i + PERIOD_FRAMES * 2])
        pcm.drain()
    except a.ALSAAudioError as exc:
        raise InputError(f"ALSA device '{device}': {exc}") from None
    finally:
        pcm.close()


def cmd_out(args) -> int:
    record, path = the_clip(args)
    target = Path(args.path)
    if target.is_dir():
        raise InputError(f"{target}: a folder; give a file name ending .wav or {path.suffix}")
    if target.exists() and not args.force:
        raise InputError(f"{target} exists: --force overwrites it")
    if target.suffix.lower() not in (".wav", path.suffix.lower()):
        raise InputError(f"{target}: write a .wav, or a {path.suffix} (a copy of the clip's own file)")
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        if target.suffix.lower() == ".wav":
            from ..core.wavfile import write_wav
            samples, rate = read_clip(record, path)
            write_wav(tmp, samples, rate)
        else:
            shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{target}: cannot write it ({exc.strerror or exc})") from None
    say(f"wrote {target} ({size_text(target.stat().st_size)})", "edge-audio clips")
    return 0


def title_of(record: dict) -> str:
    """A drawing's title: label, time, and the source, peak and status when the record has them."""
    peak = record.get("peak_score", record.get("peak"))
    bits = [str(record.get("label", "?")), local_time(record.get("event_start_ts", record.get("start_ts")))]
    bits += [f"source {record['source']}"] if record.get("source") else []
    bits += [f"peak {float(peak):.2f}"] if peak is not None else []
    bits += [str(record["status"])] if record.get("status") not in (None, "kept") else []
    return "  |  ".join(bits)


def cmd_png(args) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(f"drawing a clip needs matplotlib: {PLOT_INSTALL}") from None
    target = Path(args.path)
    if target.exists() and not args.force:
        raise InputError(f"{target} exists: --force overwrites it")
    record, path = the_clip(args)
    samples, rate = read_clip(record, path)
    from .clipplot import png
    drawn = png(record, samples, rate, target, title_of(record))
    say(f"wrote {target} (the event from {drawn.span_s[0]:.2f} s to {drawn.span_s[1]:.2f} s)", "edge-audio clips")
    return 0


def add_parser(sub) -> None:
    p = add_command(sub, "clips", "list, play, export or draw the clips kept around detections",
                    "List the clips the daemon kept around its detections ([clips] enabled = true), newest first: "
                    "when, source, label, length, size, status (kept, withheld for privacy, cut, skipped) and the "
                    "first characters of the event id, which the actions below take. Without an ACTION: the list.",
                    ["edge-audio clips --label Dog --limit 5", "edge-audio clips --config /etc/edge-audio/config.toml",
                     "edge-audio clips play 3f9c2a1b", "edge-audio clips out 3f9c wanted.wav",
                     "edge-audio clips png 3f9c dog.png"])
    _folder_args(p, None)
    p.add_argument("--label", help="only clips of this label (exactly as listed)")
    p.add_argument("--source", help="only clips heard by this source")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="show the newest N (default: 20; 0: all)")
    p.add_argument("--json", action="store_true", help="each clip's record as one JSON line")
    p.set_defaults(func=cmd_list)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    a = add_command(actions, "play", "play a clip through ALSA", "Play a clip (16 kHz mono) on an ALSA device.",
                    ["edge-audio clips play 3f9c2a1b", "edge-audio clips play 3f9c --device plughw:1,0"])
    a.add_argument("--device", default="default", help="ALSA playback device (default: default; aplay -L lists them)")
    a.set_defaults(func=cmd_play)
    a = add_command(actions, "out", "write a clip's audio to a file",
                    "Write a clip's audio to PATH: a WAV (16-bit, 16 kHz mono) when PATH ends .wav, else a copy of "
                    "the clip's own file (PATH must end as it does, .flac say).",
                    ["edge-audio clips out 3f9c2a1b dog.wav", "edge-audio clips out 3f9c dog.flac --force"])
    a.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    a.set_defaults(func=cmd_out)
    a = add_command(actions, "png", "draw a clip's log-mel spectrogram",
                    "Draw a clip's log-mel spectrogram (the model's own front end: 64 mel bands, 10 ms frames) as a "
                    f"PNG, the event's span marked in green. Needs matplotlib: {PLOT_INSTALL}.",
                    ["edge-audio clips png 3f9c2a1b dog.png"])
    a.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    a.set_defaults(func=cmd_png)
    for name, parser in actions.choices.items():
        parser.add_argument("id", metavar="ID", help="the clip's event id, or its first characters")
        if name != "play":
            parser.add_argument("path", metavar="PATH", help="the file to write")
        _folder_args(parser, argparse.SUPPRESS)


def _folder_args(p, default) -> None:
    """--config and --folder, before the action or after it (an action's own default leaves the first one be)."""
    p.add_argument("--config", metavar="FILE", default=default,
                   help="the daemon's config: its [clips] folder (default: clips/ in the state directory)")
    p.add_argument("--folder", metavar="DIR", default=default, help="the clips folder itself")
