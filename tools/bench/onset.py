"""`python -m tools onset`: how soon a sound's `start` reaches the broker, and what the fast onset costs in false
starts, before (onset_threshold = 1.0: only the average starts events) and after (the default).

    false starts   offline, through the kit's own window loop, classifier and detector, on every devset clip with
                   silence around it and on minutes of background audio (silence, noise, hum), for two watch
                   lists: every label (the detector's default; a start of a label outside the clip's lenient labels
                   is false, and every start on background audio) and a board profile's allow list (none of those
                   sounds is in the devset or the background: every start is false)
    latency        live: two daemons (before, after) read the same paced stream on stdin, the way a microphone
                   delivers it (each 64 ms read handed over when it is complete), and publish to a Mosquitto
                   started here; a subscriber notes when each `start` of the sound's label arrives. The sounds: the
                   labelled recordings in the asset mirror's audio/ (a meow, a bark, a baby crying), each at several
                   positions against the 0.48 s hop, and one devset clip per class. Latency = arrival - the moment the
                   sound began (its first 10 ms frame within 20 dB of the clip's loudest and 10 dB over its
                   background)
"""

from __future__ import annotations

import csv
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge.app.command import add_command, sayer
from edge.core.stream import HOP_SECONDS
from tools.rig.broker import Broker
from tools.rig.daemon import DaemonProcess, bench_daemon_config
from tools.rig.mqtt import Subscriber
from tools.rig.ports import RigError

from .goals import TARGETS

RATE = 16000
CHUNK = 1024
GAP_S = 2.88  # silence before each clip (six 0.48 s hops): events of the previous one end (hold 1 s + average)
BACKGROUND_S = 60.0
ONSET_FROM_TOP_DB = 20.0  # the sound begins at the first 10 ms frame within this of the clip's loudest ...
ONSET_OVER_FLOOR_DB = 10.0  # ... and this far above its background (the level of its quietest tenth)
LATENCY_TARGET_S = TARGETS["onset_s"]
# (onset_threshold, rise dB, onset window lead s): the bar, and where the extra window ends after a sound began
SWEEP = ((0.7, 3.0, 0.3), (0.8, 3.0, 0.3), (0.75, 3.0, 0.4), (0.75, 3.0, 0.5), (0.75, 3.0, 0.0))
PHASES = 12  # positions of each recording's onset against the hop grid (0.04 s apart)
AFTER_ONSET_S = 3.0  # each recording is cut this long after its onset: its event starts well within that
DEVSET_OFFSETS = 8  # offline, each devset clip at this many positions against the hop
# the recordings with a labelled sound, and the classes that count as hearing it (the class and its parents)
RECORDINGS = {"miaow_16k.wav": {76, 77, 78, 68, 67}, "dog_975ms.wav": {69, 70, 71, 72, 74, 75, 68, 67},
              "baby_5000ms.wav": {20, 19, 21, 22, 14}}
BOARD_PROFILE = "pi4-usb-coral"
say = sayer("onset")


@dataclass
class Clip:
    name: str
    pcm: np.ndarray  # int16 mono 16 kHz
    lenient: set
    onset: int  # sample index of the sound's start


def onset_sample(pcm: np.ndarray) -> int:
    """Where the sound begins: the first 10 ms frame within ONSET_FROM_TOP_DB of the clip's loudest frame and
    ONSET_OVER_FLOOR_DB above the clip's own background."""
    frames = pcm[:pcm.size // 160 * 160].astype(np.float64).reshape(-1, 160)
    level = 10 * np.log10((frames ** 2).mean(axis=1) + 1e-9)
    bar = max(level.max() - ONSET_FROM_TOP_DB, np.percentile(level, 10) + ONSET_OVER_FLOOR_DB)
    return int(np.argmax(level >= min(bar, level.max()))) * 160


def load_devset(folder: Path, per_class: int | None = None) -> list[Clip]:
    from edge.core.wavfile import read_wav
    clips, seen = [], {}
    with open(folder / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            if per_class is not None and seen.get(row["source_label"], 0) >= per_class:
                continue
            seen[row["source_label"]] = seen.get(row["source_label"], 0) + 1
            wav = read_wav(folder / "clips" / row["file"])
            if wav.rate_hz != RATE or wav.channels != 1:
                raise RigError(f"{row['file']}: devset clips are 16 kHz mono")
            pcm = np.ascontiguousarray(wav.samples[:, 0])
            clips.append(Clip(row["file"], pcm, {int(i) for i in row["lenient_indices"].split(";") if i},
                              onset_sample(pcm)))
    return clips


def load_recordings(folder: Path, phases: int = PHASES) -> list[Clip]:
    """RECORDINGS from `folder` at 16 kHz, each at `phases` positions against the hop (a few ms of extra silence
    in front), since the latency depends on where the sound begins within the 0.48 s grid."""
    from edge.core.resample import Resampler
    from edge.core.wavfile import read_wav
    clips = []
    for name, lenient in RECORDINGS.items():
        wav = read_wav(folder / name)
        x = wav.samples.astype(np.float32).mean(axis=1)
        if wav.rate_hz != RATE:
            r = Resampler(wav.rate_hz, RATE, x.size)
            x = np.concatenate([r.process(x), r.flush()])
        pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
        pcm = pcm[:onset_sample(pcm) + int(AFTER_ONSET_S * RATE)]
        for k in range(phases):
            shifted = np.concatenate([np.zeros(int(k * HOP_SECONDS * RATE / phases), np.int16), pcm])
            clips.append(Clip(f"{name}@{k}", shifted, lenient, onset_sample(shifted)))
    return clips


def backgrounds(seconds: float = BACKGROUND_S) -> list[tuple[str, np.ndarray]]:
    """Background audio that should start nothing: silence, noise of three colours, mains hum."""
    n = int(seconds * RATE)
    rng = np.random.default_rng(12)
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.arange(spectrum.size), 1)
    pink, brown = np.fft.irfft(spectrum / np.sqrt(f), n), np.fft.irfft(spectrum / f, n)
    t = np.arange(n) / RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3, 5))

    def at(x, dbfs):
        x = x / np.sqrt(np.mean(x ** 2)) * 32768 * 10 ** (dbfs / 20)
        return np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return [("silence", np.zeros(n, np.int16)), ("white noise -50 dBFS", at(white, -50)),
            ("white noise -30 dBFS", at(white, -30)), ("pink noise -30 dBFS", at(pink, -30)),
            ("brown noise -30 dBFS", at(brown, -30)), ("mains hum -35 dBFS", at(hum, -35))]


def window_scores(classifier, pcm: np.ndarray, hop_s: float, lead_s: float = 0.0) -> list:
    """(t_start, t_end, level dBFS, scores, extra) of every window of a stream, as the daemon frames it: the hop
    grid's, and with `lead_s` > 0 an extra one ending that long after each sound's onset (extra True)."""
    from edge.core.detector import level_dbfs
    from edge.core.stream import WindowLoop, hop_samples_for
    p = classifier.params
    loop = WindowLoop(p.window_samples, hop_samples_for(hop_s), RATE, 1, RATE, grid_samples=classifier.grid_samples,
                      onset_lead_samples=round(lead_s * RATE))
    if classifier.frontend is not None:
        classifier.frontend.reset()
    out = []
    for i in range(0, pcm.size, CHUNK):
        for window, start in loop.feed(pcm[i:i + CHUNK]):
            out.append((start / RATE, (start + p.window_samples) / RATE, level_dbfs(window),
                        classifier.classify(window, start).copy(), loop.extra))
    return out


def starts(labels, params, windows) -> list[tuple[float, int]]:
    """(window end time, class) of every start the detector makes on these windows."""
    from edge.core.detector import Detector
    det = Detector(labels, params)
    found = []
    for t0, t1, level, scores, extra in windows:
        events = det.onset(scores, t0, t1, level) if extra else det.update(scores, t0, t1, level)
        found += [(t1, e.class_index) for e in events if e.type == "start"]
    return found


def offline(classifier, recordings: list[Clip], clips: list[Clip], hop_s: float, configs: dict,
            board_allow: list, board_hold_s: float) -> dict:
    """Per detector configuration: false starts for both watch lists, and how soon after the sound began the
    window that starts its event ends (the earliest its start can be sent)."""
    gap = np.zeros(int(GAP_S * RATE), np.int16)
    step = int(hop_s * RATE) // DEVSET_OFFSETS
    clips = [replace(c, pcm=np.concatenate([np.zeros(k * step, np.int16), c.pcm]), onset=c.onset + k * step)
             for k in range(DEVSET_OFFSETS) for c in clips]
    framed = {}  # the windows of every stream, per onset window lead
    for lead in sorted({p.onset_lead_seconds for p in configs.values()}):
        framed[lead] = (
            [window_scores(classifier, np.concatenate([gap, c.pcm, gap]), hop_s, lead) for c in recordings],
            [window_scores(classifier, np.concatenate([gap, c.pcm, gap]), hop_s, lead) for c in clips],
            [(name, window_scores(classifier, pcm, hop_s, lead)) for name, pcm in backgrounds()])
    result = {}
    for name, params in configs.items():
        rec_windows, clip_windows, bg_windows = framed[params.onset_lead_seconds]
        board = replace(params, allow=list(board_allow), hold_seconds=board_hold_s)
        false_devset = sum(sum(1 for _, c in starts(classifier.labels, params, w) if c not in clip.lenient)
                           for clip, w in zip(clips, clip_windows))
        result[name] = {
            "false_starts_every_label": {"devset": false_devset, **{bg: len(starts(classifier.labels, params, w))
                                                                   for bg, w in bg_windows}},
            "false_starts_board_list": {"devset": sum(len(starts(classifier.labels, board, w)) for w in clip_windows),
                                        **{bg: len(starts(classifier.labels, board, w)) for bg, w in bg_windows}},
            "window_end_latency_s": {"recordings": _latencies(classifier, params, recordings, rec_windows),
                                     "devset": _latencies(classifier, params, clips, clip_windows)}}
    return result


def _latencies(classifier, params, clips: list[Clip], windows: list) -> dict:
    lat = []
    for clip, w in zip(clips, windows):
        onset_t = GAP_S + clip.onset / RATE
        hits = [t for t, c in starts(classifier.labels, params, w) if c in clip.lenient and t >= onset_t]
        if hits:
            lat.append(min(hits) - onset_t)
    return {"median": statistics.median(lat) if lat else None, "detected": len(lat), "clips": len(clips)}


def live(model: str, clips: list[Clip], configs: dict, work: Path, hop_s: float) -> dict:
    """Both configurations as daemons on one paced stream; (arrival - onset) of the first matching start."""
    broker = Broker(work / "broker")
    daemons = {}
    try:
        sub = Subscriber(broker.port, "edge-audio/#")
        for name, detector in configs.items():
            audio = {"source": "stdin", "rate_hz": 16000, "channels": 1}
            cfg = bench_daemon_config(work / f"{name}.toml", broker.port, audio, model, work / f"{name}.db", hop_s,
                                      detector, name)
            daemons[name] = DaemonProcess(cfg, stdin_pipe=True)
        for name, d in daemons.items():  # model loaded and connected before the first sound
            if not sub.wait_for(f"/{name}/status", b"online", 60) or not d.alive():
                raise RigError(f"the {name} daemon did not come online: {d.log_tail()}")
        gap = np.zeros(int(GAP_S * RATE), np.int16)
        hop = int(round(hop_s * RATE))
        pieces, onsets, seg_starts, pos = [], [], [], 0
        for c in clips:  # every segment starts on the hop grid: each sound meets the windows as offline
            tail = -(gap.size + c.pcm.size) % hop
            pieces += [gap, c.pcm, np.zeros(tail, np.int16)]
            seg_starts.append(pos)
            onsets.append(pos + gap.size + c.onset)
            pos += gap.size + c.pcm.size + tail
        stream = np.concatenate(pieces + [gap])
        say(f"live: {stream.size / RATE:.0f} s of audio at real time into {len(daemons)} daemons")
        t0 = _feed(stream, list(daemons.values()))
        time.sleep(2.0)
        events = sub.timed_events()
        sub.close()
    finally:
        for d in daemons.values():
            d.stop()
        broker.stop()
    result = {}
    onset_t = [t0 + o / RATE for o in onsets]
    segments = [t0 + s / RATE for s in seg_starts] + [float("inf")]  # clip i owns [segments[i], segments[i + 1])
    for name in configs:
        mine = [(t, e) for t, e in events if e["device_id"] == name and e["type"] == "start"]
        lat, false = [], 0
        for i, clip in enumerate(clips):
            window = [(t, e) for t, e in mine if segments[i] <= t < segments[i + 1]]
            hits = [t for t, e in window if e["class_index"] in clip.lenient and t >= onset_t[i]]
            false += sum(1 for _, e in window if e["class_index"] not in clip.lenient)
            lat.append(min(hits) - onset_t[i] if hits else None)
        result[name] = {"latencies": lat, "false_starts": false}
    return result


def _feed(stream: np.ndarray, daemons: list[DaemonProcess]) -> float:
    """Write the stream into every daemon's stdin like a microphone: each CHUNK when its last sample has happened.
    Returns the wall time (time.monotonic) of sample 0."""
    t0 = time.monotonic() + 0.1
    for i in range(0, stream.size, CHUNK):
        due = t0 + (i + CHUNK) / RATE
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for daemon in daemons:
            daemon.feed(stream[i:i + CHUNK])
    return t0


def _board_detector(profile: str):
    """The [detector] of a shipped board profile by name, or of a daemon config file."""
    from edge import firmware
    from edge.config import load_config, parse_config
    if profile in firmware.profile_names():
        return parse_config(firmware.profile_text(profile), profile).detector
    return load_config(profile).detector


def run(args) -> int:
    from edge.core.detector import ONSET_RISE_DB, ONSET_THRESHOLD, ONSET_WINDOW_SECONDS, DetectorParams
    from edge.model.bundle import default_bundle_path
    from edge.model.classifier import Classifier

    model = args.model or str(default_bundle_path())
    classifier = Classifier.open(model, None, "cpu", 1)
    recordings = load_recordings(Path(args.audio), args.phases)
    clips = load_devset(Path(args.devset))
    board = _board_detector(args.board_profile)
    base = DetectorParams()
    configs = {"before": replace(base, onset_threshold=1.0), "after": base}
    if args.sweep:
        configs.update({f"{t:g}, {r:g} dB, {w:g} s": replace(base, onset_threshold=t, onset_rise_db=r,
                                                                onset_window_seconds=w) for t, r, w in SWEEP})
    say(f"offline: {len(recordings)} recordings, {len(clips)} devset clips x {DEVSET_OFFSETS} positions, "
        f"{BACKGROUND_S * 6:.0f} s of background")
    off = offline(classifier, recordings, clips, args.hop, configs, board.allow, board.hold_seconds)
    live_clips = recordings + load_devset(Path(args.devset), per_class=args.per_class)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    on = {}
    if args.live:
        work = Path(tempfile.mkdtemp(prefix="onset-", dir=out))
        on = live(model, live_clips, {"before": {"onset_threshold": 1.0}, "after": {}}, work, args.hop)
    result = {"model": model, "onset_threshold": ONSET_THRESHOLD, "onset_rise_db": ONSET_RISE_DB,
              "onset_window_seconds": ONSET_WINDOW_SECONDS,
              "board_allow": board.allow, "offline": off, "live": on, "live_clips": [c.name for c in live_clips],
              "per_class": args.per_class}
    (out / "onset.json").write_text(json.dumps(result, indent=2) + "\n")
    for line in report(result, len(recordings), args.per_class):
        print(line)
    say(f"results in {out / 'onset.json'}")
    return 0


def report(result: dict, recordings: int, per_class: int) -> list[str]:
    off, on = result["offline"], result["live"]
    lines = [f"detector defaults (smoothing 2 windows, threshold 0.5, hold 1 s); before = onset_threshold 1.0 (only "
             f"the average starts events), after = onset_threshold {result['onset_threshold']:g} on a window "
             f"{result['onset_rise_db']:g} dB louder than the one before, or on an extra window ending "
             f"{result['onset_window_seconds']:g} s after a sound began (the defaults)"]
    for name, r in on.items():
        rec = [x for c, x in zip(result["live_clips"], r["latencies"]) if "@" in c and x is not None]
        dev = [x for c, x in zip(result["live_clips"], r["latencies"]) if "@" not in c and x is not None]
        med = statistics.median(rec) if rec else None
        verdict = "" if name != "after" or med is None else \
            f" (target <= {LATENCY_TARGET_S} s): " + ("met" if med <= LATENCY_TARGET_S else "NOT met")
        lines.append(f"onset -> start at the broker, {name:6s}: recordings (meow, bark, baby cry, each at {recordings // 3} "
                     f"positions against the hop) median " + (f"{med:.2f} s" if med is not None else "-")
                     + f" ({len(rec)}/{recordings} heard)"
                     + f"; devset ({per_class} clip per class) median "
                     + (f"{statistics.median(dev):.2f} s ({len(dev)} heard)" if dev else "- (none heard)")
                     + f"; {r['false_starts']} starts of another label meanwhile{verdict}")
    for name, r in off.items():
        e, b = r["false_starts_every_label"], r["false_starts_board_list"]
        lat = r["window_end_latency_s"]
        lines.append(f"offline, {name:20s} false starts, every label: {sum(e.values()):3d} (devset {e['devset']}, "
                     f"background {sum(e.values()) - e['devset']}); board allow list: {sum(b.values())}; window end "
                     f"after the onset, median: recordings {_s(lat['recordings'])}, devset {_s(lat['devset'])}")
    if "before" in off and "after" in off:
        b, a = off["before"], off["after"]
        pairs = (("background audio (silence, noise, hum), every label watched",
                  _background(b["false_starts_every_label"]), _background(a["false_starts_every_label"])),
                 (f"the devset clips and background audio, a board profile's allow list ({', '.join(result['board_allow'])}: "
                  "none of them is in that audio)", sum(b["false_starts_board_list"].values()),
                  sum(a["false_starts_board_list"].values())),
                 ("the devset clips, every label watched (a start of a label outside the clip's own: confusions "
                  "between real sounds)", b["false_starts_every_label"]["devset"],
                  a["false_starts_every_label"]["devset"]))
        for what, fb, fa in pairs:
            lines.append(f"false starts on {what}: after {fa} vs before {fb} (target: no higher): "
                         + ("met" if fa <= fb else "NOT met"))
    return lines


def _background(counts: dict) -> int:
    return sum(v for k, v in counts.items() if k != "devset")


def _s(lat: dict) -> str:
    return (f"{lat['median']:.2f} s" if lat["median"] is not None else "-") + f" ({lat['detected']}/{lat['clips']})"


def add_parser(sub) -> None:
    p = add_command(sub, "onset", "how soon a start reaches the broker, and the fast onset's false starts "
                    "before/after", "False starts offline over every devset clip and minutes of silence, noise and "
                    "hum, and onset -> start latency at a real broker (two daemons, before and after, on one paced "
                    "stream), for the detector's defaults against the same without the fast onset.",
                    ["python -m tools onset --devset ../shared/devset", "python -m tools onset --sweep --no-live"])
    p.add_argument("--devset", default="../shared/devset", help="folder with labels.csv and clips/ (default: "
                                                                 "%(default)s)")
    p.add_argument("--model", metavar="BUNDLE|TFLITE", help="model (default: the installed bundle)")
    p.add_argument("--audio", default="../shared/audio", help="folder with the labelled recordings "
                                                               f"({', '.join(RECORDINGS)}) (default: %(default)s)")
    p.add_argument("--phases", type=int, default=PHASES, help=f"positions of each recording against the hop "
                                                               f"(default: {PHASES})")
    p.add_argument("--per-class", type=int, default=1, help="devset clips per class in the live run (default: 1)")
    p.add_argument("--board-profile", default=BOARD_PROFILE, help="board profile name (edge-audio profiles) or daemon "
                                                                  "config whose allow list the second false start "
                                                                  "figure uses (default: %(default)s)")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help="window hop in seconds (default: %(default)s)")
    p.add_argument("--sweep", action="store_true", help="also the offline figures for other onset thresholds")
    p.add_argument("--no-live", dest="live", action="store_false", help="offline figures only")
    p.add_argument("--out", default="out/bench", help="where onset.json goes (default: %(default)s)")
    p.set_defaults(func=cmd)


def cmd(args) -> int:
    from edge.core.errors import InputError
    if not (Path(args.devset) / "labels.csv").is_file():
        raise InputError(f"--devset {args.devset}: no labels.csv there (EDGE_AUDIO_ASSETS=../shared: ../shared/devset)")
    if not 1 <= args.per_class <= 8 or not 1 <= args.phases <= 20:
        raise InputError("--per-class must be between 1 and 8, --phases between 1 and 20")
    missing = [n for n in RECORDINGS if not (Path(args.audio) / n).is_file()]
    if missing:
        raise InputError(f"--audio {args.audio}: {', '.join(missing)} not there (python -m tools fetch samples)")
    try:
        return run(args)
    except RigError as exc:
        raise InputError(str(exc)) from None
