"""`python -m tools clips-bench`: what [clips] costs the running daemon at real time, measured in one run.

    the audio  one WAV looped at real time: devset recordings (ESC-50, 16 kHz) LOOP_S apart, each in the middle of
               its slot, over a -60 dBFS noise floor (a microphone's own; digital silence would flatter FLAC); the
               detector watches their labels only (a home that listens for a few sounds), so each recording is
               about one event: several events a minute
    daemons    `edge-audio run` with [clips] off, and with [clips] on for each format asked (FLAC, Opus), every
               other setting the same (CPU delegate, default hop, MQTT to one Mosquitto started here, the
               crash-safe spool, [clips]' defaults: 3 s before, 2 s after, privacy "withhold"), all started
               together and replaying the same WAV
    CPU        every daemon's CPU time (every thread, /proc/PID/task/*/schedstat) read over the same seconds, in
               rounds of one whole loop each (every round holds the same sounds, whatever each daemon's phase):
               CPU ms per audio second (at real time: per wall second) and, round by round, clips on / clips off
    memory     each daemon's peak RSS (VmHWM) after the rounds, and clips on - clips off
    disk       the clips each daemon wrote during the rounds (read from its clips folder before it stops): how
               many, their mean length and bytes, and what EVENTS_PER_DAY such clips take a day

Everything (the WAV, the spools, the clips folders) is in a temporary folder that goes at the end; the figures go
to out/bench/clips_bench.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.app.command import add_command, sayer
from edge.core.stream import HOP_SECONDS
from edge.core.files import MIB
from tools.rig.broker import Broker
from tools.rig.daemon import (
    DaemonProcess,
    bench_daemon_config,
    cpu_seconds,
    process_peak_rss_mb,
)
from tools.rig.mqtt import Subscriber
from tools.rig.ports import RigError

say = sayer("clips-bench")

RATE = 16000
LOOP_S = 12.0  # one recording per this many seconds: 5 a minute
NOISE_DBFS = -60.0
EVENTS_PER_DAY = 100
# (devset file, the label the detector watches for it): each starts that label and no speech class (privacy)
SOUNDS = (("esc50_hen_4-197103-A-6.wav", "Chicken, rooster"),
          ("esc50_clock_alarm_2-104476-A-37.wav", "Alarm"))
FORMATS = ("flac", "opus")


# -- the calculations (pure) ---------------------------------------------------------------------------------------
def per_audio_second_ms(cpu_s: float, wall_s: float) -> float:
    """CPU ms per second of audio, for a daemon replaying at real time (audio seconds = wall seconds)."""
    return 1000.0 * cpu_s / wall_s


def spread(values: list[float]) -> dict:
    """Median and range."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def clip_figures(records: list[dict], events_per_day: float = EVENTS_PER_DAY) -> dict:
    """What a clips folder's records say: clips kept (with audio), withheld or skipped; the kept ones' mean
    seconds and bytes, bytes per second of clip, and MiB a day at `events_per_day` clips of that mean size."""
    kept = [r for r in records if r.get("file") and r.get("bytes")]
    n = len(kept)
    mean_bytes = sum(r["bytes"] for r in kept) / n if n else 0.0
    seconds = sum(r.get("seconds", 0.0) for r in kept)
    return {"kept": n, "withheld": sum(1 for r in records if str(r.get("status", "")).startswith("withheld")),
            "skipped": sum(1 for r in records if str(r.get("status", "")).startswith("skipped")),
            "mean_seconds": seconds / n if n else 0.0, "mean_bytes": mean_bytes,
            "bytes_per_second": sum(r["bytes"] for r in kept) / seconds if seconds else 0.0,
            "events_per_day": events_per_day, "mib_per_day": mean_bytes * events_per_day / MIB,
            "formats": sorted({r.get("format", "?") for r in kept})}


# -- the audio -----------------------------------------------------------------------------------------------------
def build_audio(devset: Path, path: Path, slot_s: float = LOOP_S, seed: int = 7) -> float:
    """SOUNDS one per `slot_s`, each centred in its slot, over a NOISE_DBFS white noise floor, written to `path`
    as 16 kHz mono; its length in seconds (a whole number of hops: each loop frames the same windows)."""
    from edge.core.wavfile import read_wav, write_wav
    slot = int(slot_s * RATE)
    total = slot * len(SOUNDS)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(total) * (32768.0 * 10 ** (NOISE_DBFS / 20))
    for k, (name, _) in enumerate(SOUNDS):
        wav = read_wav(devset / "clips" / name)
        if wav.rate_hz != RATE or wav.channels != 1:
            raise RigError(f"{name}: devset recordings are 16 kHz mono")
        pcm = wav.samples[:slot, 0].astype(np.float64)
        at = k * slot + (slot - pcm.size) // 2
        x[at:at + pcm.size] += pcm
    write_wav(path, np.clip(np.round(x), -32768, 32767).astype(np.int16), RATE)
    return total / RATE


# -- the run -------------------------------------------------------------------------------------------------------
def run(args) -> int:
    from edge.model.bundle import default_bundle_path
    model = args.model or str(default_bundle_path())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arms = ["off"] + args.formats
    with tempfile.TemporaryDirectory(prefix="clips-bench-") as tmp:
        work = Path(tmp)
        loop_s = build_audio(Path(args.devset), work / "sounds.wav")
        say(f"{len(SOUNDS)} devset recordings in a {loop_s:g} s loop ({60 * len(SOUNDS) / loop_s:g} a minute); "
            f"daemons: clips {', '.join(arms)}; {args.rounds} rounds of one loop")
        measured = _measure(args, model, work, arms, loop_s)
    result = assemble(measured, arms, loop_s, args.events_per_day)
    (out / "clips_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    for line in report(result):
        print(line)
    say(f"results in {out / 'clips_bench.json'}")
    return 0 if all(code == 0 for code in result["exit"].values()) else 1


def _measure(args, model: str, work: Path, arms: list[str], loop_s: float) -> dict:
    broker = Broker(work / "broker")
    daemons: dict[str, DaemonProcess] = {}
    try:
        sub = Subscriber(broker.port, "edge-audio/#")
        audio = {"source": "wav", "file": work / "sounds.wav", "realtime": True, "loop": True}
        detector = {"allow": [label for _, label in SOUNDS]}
        for arm in arms:
            clips = None if arm == "off" else {"enabled": True, "format": arm, "folder": work / f"clips-{arm}"}
            cfg = bench_daemon_config(work / f"{arm}.toml", broker.port, audio, model, work / f"spool-{arm}.db",
                                      args.hop, detector=detector, device_id=f"clips-{arm}", clips=clips)
            daemons[arm] = DaemonProcess(cfg)
        for arm, d in daemons.items():
            if not sub.wait_for(f"clips-{arm}/status", b"online", 60):
                raise RigError(f"the daemon with clips {arm} did not come online: {d.log_tail()}")
        say(f"daemons running ({', '.join(f'{a}: pid {d.pid}' for a, d in daemons.items())}); "
            f"warming up {args.warmup:g} s")
        time.sleep(args.warmup)
        rounds = []
        for r in range(args.rounds):
            order = arms if r % 2 == 0 else arms[::-1]  # who is read first alternates
            c0 = {a: cpu_seconds(daemons[a].pid) for a in order}
            t0 = time.monotonic()
            time.sleep(loop_s)
            t1 = time.monotonic()
            c1 = {a: cpu_seconds(daemons[a].pid) for a in order}
            ms = {a: per_audio_second_ms(c1[a] - c0[a], t1 - t0) for a in arms}
            rounds.append(ms)
            say(f"round {r + 1}/{args.rounds}: CPU ms per audio second "
                + ", ".join(f"clips {a} {ms[a]:.2f}" for a in arms))
        rss = {a: process_peak_rss_mb(d.pid) for a, d in daemons.items()}
        for arm, d in daemons.items():
            if not d.alive():
                raise RigError(f"the daemon with clips {arm} stopped: {d.log_tail()}")
        records = {a: _records(work / f"clips-{a}") for a in arms if a != "off"}
        events = {a: sum(1 for m in sub.received() if m.topic.startswith(f"edge-audio/clips-{a}/")
                         and m.topic.endswith("/events") and b'"end"' in m.payload) for a in arms}
        code = {a: d.stop() for a, d in daemons.items()}
        sub.close()
    finally:
        for d in daemons.values():
            if d.alive():
                d.stop()
        broker.stop()
    return {"rounds": rounds, "rss": rss, "records": records, "ends": events, "exit": code}


def _records(folder: Path) -> list[dict]:
    from edge.app.clips import clip_store
    store = clip_store(folder)
    return store.records() if store is not None else []


def assemble(m: dict, arms: list[str], loop_s: float, events_per_day: float) -> dict:
    """The result: per arm its CPU per audio second (median, range), peak RSS and, with clips on, its ratio and
    difference to clips off and its clips."""
    rounds = m["rounds"]
    result = {"loop_seconds": loop_s, "sounds": [f for f, _ in SOUNDS], "rounds": rounds, "exit": m["exit"],
              "arms": {}}
    for arm in arms:
        row = {"cpu_ms_per_audio_s": spread([r[arm] for r in rounds]), "peak_rss_mib": m["rss"][arm],
               "event_ends": m["ends"][arm]}
        if arm != "off":
            row["cpu_ratio_to_off"] = spread([r[arm] / r["off"] for r in rounds if r["off"]])
            row["rss_over_off_mib"] = m["rss"][arm] - m["rss"]["off"]
            row["clips"] = clip_figures(m["records"][arm], events_per_day)
        result["arms"][arm] = row
    return result


def report(result: dict) -> list[str]:
    arms = result["arms"]
    off = arms["off"]
    n = off["cpu_ms_per_audio_s"]["n"]
    head = (f"clips at real time, {len(result['sounds'])} devset recordings in a {result['loop_seconds']:g} s loop "
            f"({60 * len(result['sounds']) / result['loop_seconds']:g} a minute), {n} rounds of one loop, the daemons "
            "side by side over the same seconds:")
    cpu = off["cpu_ms_per_audio_s"]
    lines = [head, (f"  clips off : CPU {cpu['median']:.2f} ms per audio second (range {cpu['min']:.2f}-"
                   f"{cpu['max']:.2f}), peak RSS {off['peak_rss_mib']:.1f} MiB, {off['event_ends']} events ended")]
    for arm, row in arms.items():
        if arm == "off":
            continue
        cpu, ratio, c = row["cpu_ms_per_audio_s"], row["cpu_ratio_to_off"], row["clips"]
        lines.append(f"  clips {arm:4s}: CPU {cpu['median']:.2f} ms per audio second (range {cpu['min']:.2f}-"
                     f"{cpu['max']:.2f}), {ratio['median']:.2f}x clips off (range {ratio['min']:.2f}-"
                     f"{ratio['max']:.2f}); peak RSS {row['peak_rss_mib']:.1f} MiB ({row['rss_over_off_mib']:+.1f} "
                     f"MiB); {row['event_ends']} events ended, {c['kept']} clips written ({c['withheld']} withheld, "
                     f"{c['skipped']} skipped), {c['mean_seconds']:.1f} s and {c['mean_bytes'] / 1024:.0f} KiB a "
                     f"clip on average ({c['bytes_per_second'] / 1024:.1f} KiB/s); at {c['events_per_day']:g} "
                     f"events a day: {c['mib_per_day']:.1f} MiB/day"
                     + ("" if c["formats"] in ([arm], []) else f" (NOT {arm}: written as {', '.join(c['formats'])})"))
    return lines


def add_parser(sub) -> None:
    p = add_command(sub, "clips-bench", "what [clips] costs the daemon at real time: CPU, memory and disk",
                    "Run the daemon with [clips] off and on (FLAC, Opus) side by side on the same recording at real "
                    "time (devset sounds several times a minute, WAV replay in a loop, MQTT to a Mosquitto started "
                    "here) and measure, over the same seconds in rounds of one loop, each one's CPU per audio "
                    "second and the ratio to clips off, their peak RSS, and the clips written: how many, their "
                    "bytes, and the disk a day at a given number of events.",
                    ["python -m tools clips-bench --devset ../shared/devset"])
    p.add_argument("--devset", default="../shared/devset", help="folder with labels.csv and clips/ (default: "
                                                                 "%(default)s)")
    p.add_argument("--model", metavar="BUNDLE|TFLITE", help="model (default: the installed bundle)")
    p.add_argument("--formats", default="flac,opus", type=lambda s: [f for f in s.split(",") if f],
                   help="clip formats measured beside clips off (default: flac,opus)")
    p.add_argument("--rounds", type=int, default=4, help=f"rounds of one {LOOP_S * len(SOUNDS):g} s loop "
                                                         "(default: %(default)s)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before the first round (default: %(default)s)")
    p.add_argument("--events-per-day", type=float, default=EVENTS_PER_DAY,
                   help="the event rate of the disk estimate (default: %(default)s)")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help=argparse.SUPPRESS)
    p.add_argument("--out", default="out/bench", help="where the result JSON goes (default: %(default)s)")
    p.set_defaults(func=cmd)


def cmd(args) -> int:
    from edge.core.clipparams import CLIP_FORMATS
    from edge.core.errors import InputError
    if not 1 <= args.rounds <= 100 or not 0 <= args.warmup <= 600 or not args.events_per_day > 0:
        raise InputError("--rounds must be 1-100, --warmup in [0, 600], --events-per-day above 0")
    bad = [f for f in args.formats if f not in CLIP_FORMATS]
    if bad or not args.formats:
        raise InputError(f"--formats: {', '.join(bad) or 'none given'}: choose from {', '.join(CLIP_FORMATS)}")
    missing = [f for f, _ in SOUNDS if not (Path(args.devset) / "clips" / f).is_file()]
    if missing:
        raise InputError(f"--devset {args.devset}: {', '.join(missing)} not found in clips/ "
                         "(EDGE_AUDIO_ASSETS=../shared: ../shared/devset)")
    try:
        return run(args)
    except RigError as exc:
        raise InputError(str(exc)) from None
