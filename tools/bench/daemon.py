"""`python -m tools daemon-bench`: what the running daemon costs beside the bare pieces, measured in one run.

    memory   the daemon's peak RSS (VmHWM), running at real time with MQTT, against a bare LiteRT process that
             loads the same model and invokes it (numpy + the interpreter, nothing else)
    CPU      the daemon's CPU at real time against the bench pipeline's (`edge-audio bench`'s paced loop:
             source -> ring -> front end -> invoke -> scores -> detector) on the same audio, measured over the
             same seconds in paired rounds, each in its own process

The daemon replays the WAV at real time in a loop, publishes to a Mosquitto started here, and keeps its spool in
the output folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.app.command import add_command, sayer
from edge.core.stream import HOP_SECONDS
from tools.rig.broker import Broker
from tools import REPO
from tools.rig.daemon import DaemonProcess, bench_daemon_config, cpu_seconds, kit_env, process_peak_rss_mb
from tools.rig.mqtt import Subscriber
from tools.rig.ports import RigError

from .goals import TARGETS

RSS_MARGIN_MB = TARGETS["rss_margin_mb"]
CPU_RATIO_TARGET = TARGETS["cpu_ratio"]

say = sayer("daemon-bench")

# a bare LiteRT interpreter with the model sys.argv[1], one thread, its input set: what the bare-process scripts
# of the benchmarks start from
BARE_INTERPRETER = """
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1)
it.allocate_tensors()
inp = it.get_input_details()[0]
it.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
"""
# a bare interpreter process: the memory floor any LiteRT application with this model pays
BARE = BARE_INTERPRETER + """
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    it.invoke()
    n += 1
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(json.dumps({"peak_rss_mb": int(status) / 1024.0, "invokes": n}))
"""


def _pipeline_child(args) -> int:
    """The bench pipeline paced at real time, started on 'go' from stdin: prints its CPU % as JSON."""
    from edge.bench.hook import detector_hook, load_audio
    from edge.bench.measure import Pipeline, run_realtime
    from edge.core.stream import hop_samples_for
    from edge.model.classifier import Classifier

    classifier = Classifier.open(args.model, None, "cpu", 1)
    audio = load_audio(args.audio)
    pipe = Pipeline(classifier, audio, hop_samples_for(args.hop), *detector_hook(classifier.labels, classifier.params))
    pipe.run_windows(5)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        rt = run_realtime(pipe, audio.rate_hz, args.seconds)
        print(json.dumps(rt), flush=True)
    return 0


def _bare_rss(model: Path, seconds: float) -> dict:
    res = subprocess.run([sys.executable, "-c", BARE, str(model), str(seconds)], capture_output=True, text=True,
                         timeout=seconds + 120)
    if res.returncode != 0:
        raise RigError(f"the bare LiteRT process failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(res.stdout)


def _cpu_model(model: str) -> Path:
    from edge.model.bundle import resolve_model
    return resolve_model(model, None).models.cpu


def run(args) -> int:
    from edge.model.bundle import default_bundle_path
    model = args.model or str(default_bundle_path())
    cpu_model = _cpu_model(model)  # bad model: one line, exit 2, before anything starts
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="daemon-bench-", dir=out))
    rounds, daemon_rss, code, bare = _measure(args, model, cpu_model, work)
    _report(args, out, cpu_model, rounds, daemon_rss, bare, code)
    say(f"results in {out / 'daemon_bench.json'}; daemon exit status {code}")
    return 0 if code == 0 else 1


def _measure(args, model: str, cpu_model: Path, work: Path) -> tuple[list, float, int, dict]:
    """The daemon at real time against the bench pipeline in paired rounds, then the daemon's peak RSS, its exit
    status and the bare LiteRT process's figures."""
    broker = Broker(work / "broker")
    daemon = child = None
    try:
        sub = Subscriber(broker.port, "edge-audio/bench/#")
        audio = {"source": "wav", "file": Path(args.audio).resolve(), "realtime": True, "loop": True}
        cfg = bench_daemon_config(work / "daemon.toml", broker.port, audio, model, work / "spool.db", args.hop)
        daemon = DaemonProcess(cfg)
        if not sub.wait_for("/status", b"online", 30):
            raise RigError(f"the daemon did not come online: {daemon.log_tail()}")
        say(f"daemon running (pid {daemon.pid}); warming up {args.warmup:g} s")
        time.sleep(args.warmup)
        child = subprocess.Popen([sys.executable, "-m", "tools.bench.daemon", "--pipeline-child", "--model", model,
                                  "--audio", args.audio, "--seconds", str(args.seconds), "--hop", str(args.hop)],
                                 cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=kit_env())
        if child.stdout.readline().strip() != "ready":
            raise RigError("the bench pipeline process did not start")
        rounds = _paired_rounds(daemon, child, args.rounds)
        child.stdin.close()
        child.wait(30)
        daemon_rss = process_peak_rss_mb(daemon.pid)
        if not daemon.alive():
            raise RigError(f"the daemon stopped: {daemon.log_tail()}")
        code = daemon.stop()
        bare = _bare_rss(cpu_model, 3.0)
        sub.close()
    finally:
        if child is not None and child.poll() is None:
            child.kill()
        if daemon is not None and daemon.alive():
            daemon.stop()
        broker.stop()
    return rounds, daemon_rss, code, bare


def _paired_rounds(daemon, child, n: int) -> list[tuple[float, float]]:
    """(daemon CPU %, bench pipeline CPU %) per round: the pipeline child runs one round per 'go' while the
    daemon's CPU time is read over the same seconds."""
    rounds = []
    for r in range(n):
        c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        child.stdin.write("go\n")
        child.stdin.flush()
        rt = json.loads(child.stdout.readline())
        c1, t1 = cpu_seconds(daemon.pid), time.monotonic()
        d = 100.0 * (c1 - c0) / (t1 - t0)
        rounds.append((d, rt["cpu_percent"]))
        say(f"round {r + 1}/{n}: daemon {d:.2f} %, bench pipeline {rt['cpu_percent']:.2f} % of a core")
    return rounds


def _report(args, out: Path, cpu_model: Path, rounds: list, daemon_rss: float, bare: dict, code: int) -> None:
    """out/daemon_bench.json, and each target with its figure on stdout."""
    from edge.bench.measure import ratio_stats
    ratio = ratio_stats(rounds)
    result = {"model": str(cpu_model), "audio": args.audio, "rounds": args.rounds, "seconds": args.seconds,
              "daemon_peak_rss_mb": daemon_rss, "bare_litert_peak_rss_mb": bare["peak_rss_mb"],
              "rss_overhead_mb": daemon_rss - bare["peak_rss_mb"], "daemon_exit": code,
              "cpu_rounds": [{"daemon_percent": d, "pipeline_percent": p} for d, p in rounds],
              "cpu_ratio": ratio}
    (out / "daemon_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    over = result["rss_overhead_mb"]
    print(f"daemon peak RSS {daemon_rss:.1f} MiB vs a bare LiteRT process with the same model "
          f"{bare['peak_rss_mb']:.1f} MiB: +{over:.1f} MiB (target <= +{RSS_MARGIN_MB:g} MiB): "
          + ("met" if over <= RSS_MARGIN_MB else "NOT met"))
    if ratio:
        med = ratio["median"]
        print(f"CPU at real time, {ratio['rounds']} paired rounds of {args.seconds:g} s: daemon (MQTT, level, top) "
              f"median {statistics.median(d for d, _ in rounds):.2f} % vs bench pipeline "
              f"{statistics.median(p for _, p in rounds):.2f} % of a core; ratio median {med:.2f}x (range "
              f"{ratio['min']:.2f}-{ratio['max']:.2f}) (target <= {CPU_RATIO_TARGET}x): "
              + ("met" if med <= CPU_RATIO_TARGET else "NOT met"))


def add_parser(sub) -> None:
    p = add_command(sub, "daemon-bench",
                    "the daemon's peak RSS and CPU at real time beside bare LiteRT and the bench loop",
                    "Run the daemon at real time (WAV replay in a loop, MQTT to a Mosquitto started here) and "
                    "measure, in the same run, its peak RSS against a bare LiteRT process with the same model, and "
                    "its CPU at real time against the bench pipeline's on the same audio (paired rounds over the "
                    "same seconds).",
                    ["python -m tools daemon-bench --audio out/audio/speech_whistling2.wav --rounds 5 --seconds 10"])
    p.add_argument("--model", metavar="BUNDLE|TFLITE", help="model (default: the installed bundle)")
    p.add_argument("--audio", default="out/audio/speech_whistling2.wav", help="WAV replayed (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="paired CPU rounds (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per round (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before the first round (default: %(default)s)")
    p.add_argument("--hop", type=float, default=HOP_SECONDS, help=argparse.SUPPRESS)
    p.add_argument("--out", default="out/bench", help="where the result JSON goes (default: %(default)s)")
    p.set_defaults(func=cmd)


def cmd(args) -> int:
    from edge.core.errors import InputError
    if not 1 <= args.rounds <= 100 or not 0 < args.seconds <= 600 or not 0 <= args.warmup <= 600:
        raise InputError("--rounds must be 1-100, --seconds in (0, 600], --warmup in [0, 600]")
    if not Path(args.audio).is_file():
        raise InputError(f"--audio {args.audio}: not found (python -m tools fetch samples --dest out/audio)")
    try:
        return run(args)
    except RigError as exc:
        raise InputError(str(exc)) from None


if __name__ == "__main__":  # the paced pipeline child: python -m tools.bench.daemon --pipeline-child ...
    p = argparse.ArgumentParser()
    p.add_argument("--pipeline-child", action="store_true", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--hop", type=float, default=HOP_SECONDS)
    sys.exit(_pipeline_child(p.parse_args()))
