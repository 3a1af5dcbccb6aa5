"""`edge-audio calibrate`: per-label start thresholds from the site's own background audio, for a target number of
false starts per day, written as a small TOML file the daemon loads beside its config.

The listening is the daemon's own path (listen.py); the statistics are edge/core/falsestarts.py (its docstring
states the method, and so does every file this writes)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...config import (Config, calibration_name, calibration_target, listen_minutes, load_config,
                      state_directory, target_per_day)
from ...core.errors import InputError
from ...core.files import replace_file
from ...core.falsestarts import TailFit, fit_tail, start_statistic, windows_to_start
from ...core.frontend import FrontEndParams
from ...core.thresholds import USER
from ...core.tomltext import value
from ...model.classifier import Classifier
from ..command import add_command, say
from ..threshold_sources import layers_for, watched_labels
from .listen import Heard, check_wavs, hear_files, hear_live

DEFAULT_TARGET_PER_DAY = 1.0
METHOD = ("peaks over threshold: exponential tail fitted to the logit of the smoothed score's bursts above the "
          "97th percentile (bursts closer than hold + cooldown count once), their rate extrapolated to the target "
          "per day, never below the highest background score seen")


@dataclass
class LabelResult:
    label: str
    fit: TailFit
    threshold: float | None  # None: not calibrated (fit.problem says why)
    expected_per_day: float
    at_default_per_day: float
    started_at_current: int  # starts the detector made on this background at the thresholds in force
    recall: tuple[int, int] | None = None  # positives with a start at the new threshold, positives
    recall_current: tuple[int, int] | None = None  # ... at the threshold in force before
    positive_peaks: list | None = None


def statistics(cfg: Config, heard: Heard, label: str) -> list[np.ndarray]:
    """The start statistic per segment: what an on-threshold is compared with (falsestarts.py, step 1)."""
    d, hop = cfg.detector, cfg.model.hop_seconds
    p = FrontEndParams()
    extra = windows_to_start(d.min_duration_seconds, p.window_samples / p.sample_rate_hz, hop)
    return [start_statistic(s, d.off_ratio, extra) for s in heard.series(label)]


def gap_windows(cfg: Config) -> int:
    d = cfg.detector
    return int(math.ceil((d.hold_seconds + d.cooldown_seconds) / cfg.model.hop_seconds))


def calibrate_labels(cfg: Config, heard: Heard, target: float, current: dict,
                     positives: Heard | None = None, positive_labels: list[str] | None = None) -> list[LabelResult]:
    """Fit each label's background tail and choose its threshold; recall on positives when given."""
    results = []
    for label in heard.labels:
        fit = fit_tail(statistics(cfg, heard, label), cfg.model.hop_seconds, gap_windows(cfg))
        threshold = None if fit.problem else fit.threshold_for(target)
        started = sum(s.starts.get(label, 0) for s in heard.segments)
        r = LabelResult(label, fit, threshold, fit.rate_per_day(threshold) if threshold else math.nan,
                        fit.rate_per_day(cfg.detector.threshold), started)
        if positives is not None:
            peaks = [float(p.max()) for p, of in zip(statistics(cfg, positives, label), positive_labels)
                     if of == label and p.size]
            r.positive_peaks = peaks
            if peaks:
                r.recall_current = (sum(p >= current[label] for p in peaks), len(peaks))
                if threshold is not None:
                    r.recall = (sum(p >= threshold for p in peaks), len(peaks))
        results.append(r)
    return results


def contamination_note(r: LabelResult, heard: Heard, hop_s: float) -> str:
    """One paragraph naming the bursts that look like the watched sound inside the background."""
    dirty = r.fit.contaminated
    windows = sum(b.windows for b in dirty)
    top = max(dirty, key=lambda b: b.peak)
    where = heard.segments[top.segment].name
    rarity = r.fit.burst_rarity(top.peak)
    return (f"{r.label}: the background looks contaminated: {len(dirty)} burst(s), {windows} windows "
            f"({windows * hop_s:.1f} s, {100.0 * windows / max(1, heard.windows):.2f} % of the background) reach "
            f"{min(b.peak for b in dirty):.3f} to {top.peak:.3f}, where the rest of the background's tail expects a "
            f"burst that high {rarity:.2g} times in all it heard; the highest is in {where} at "
            f"{top.first * hop_s:.1f} s. They were left out of the fit: if they are the site's own background (not "
            f"{r.label}), the threshold must be above {top.peak:.3f}: listen again without them, or set "
            f"detector.thresholds in the config")


def _fmt_rate(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:.3g}"


def report(results: list[LabelResult], heard: Heard, cfg: Config, target: float, source: str) -> str:
    minutes = heard.windows * cfg.model.hop_seconds / 60
    lines = [f"background: {minutes:.1f} min ({heard.windows} windows) from {source}; target {target:g} false "
             f"start(s) per day per label", f"method: {METHOD}",
             f"{'label':<28} {'threshold':>9} {'per day':>8} {'bg max':>7} {'tail u/sigma/bursts':>22} "
             f"{'at ' + format(cfg.detector.threshold, 'g') + '/day':>10} {'starts now':>10} {'recall':>9} "
             f"{'recall now':>10}"]
    for r in results:
        f = r.fit
        tail = f"{1 / (1 + math.exp(-f.level)):.4f}/{f.sigma:.2f}/{f.clusters}" if not f.problem else "no fit"
        rec = f"{r.recall[0]}/{r.recall[1]}" if r.recall else "-"
        now = f"{r.recall_current[0]}/{r.recall_current[1]}" if r.recall_current else "-"
        thr = f"{r.threshold:.3f}" if r.threshold is not None else "-"
        lines.append(f"{r.label[:28]:<28} {thr:>9} {_fmt_rate(r.expected_per_day):>8} {f.max_score:>7.3f} "
                     f"{tail:>22} {_fmt_rate(r.at_default_per_day):>10} {r.started_at_current:>10} {rec:>9} "
                     f"{now:>10}")
    return "\n".join(lines)


def toml_text(results: list[LabelResult], heard: Heard, cfg: Config, target: float, source: str,
              model: str, model_sha256: str = "") -> str:
    """The calibration file: what it was made for (model, its sha256, the labels, the source: a daemon with
    another model or labels ignores it and says so), its figures, and a threshold per label."""
    written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    minutes = heard.windows * cfg.model.hop_seconds / 60
    lines = ["# Site calibration written by `edge-audio calibrate`: per-label start thresholds from this site's",
             "# background audio. The daemon loads it beside its config (precedence: user override in the config >",
             "# this file > the model bundle's > the profile default). Run the command again to renew it.",
             f"# config {cfg.path}; {source}",
             f"# method: {METHOD}", "", "[calibration]", f"target_false_starts_per_day = {target!r}",
             f"background_minutes = {round(minutes, 2)!r}", f'written = "{written}"', f"model = {value(model)}",
             f"model_sha256 = {value(model_sha256)}",
             f"labels = {value([r.label for r in results if r.threshold is not None])}",
             f"source = {value(source)}", "", "[detector.thresholds]"]
    for r in results:
        f = r.fit
        if r.threshold is None:
            lines.append(f"# {r.label}: not calibrated: {f.problem}")
            continue
        lines.append(f"# {r.label}: background max {f.max_score:.4f} over {f.windows} windows; tail above "
                     f"{1 / (1 + math.exp(-f.level)):.4f}: {f.clusters} bursts, sigma {f.sigma:.3f} (logit); "
                     f"expected {_fmt_rate(r.expected_per_day)} false starts/day here, "
                     f"{_fmt_rate(r.at_default_per_day)} at {cfg.detector.threshold:g}")
        if r.recall:
            lines.append(f"#   positives: {r.recall[0]}/{r.recall[1]} start at this threshold "
                         f"({r.recall_current[0]}/{r.recall_current[1]} at the one in force before)")
        if f.contaminated:
            lines.append(f"#   contaminated background: {len(f.contaminated)} burst(s) up to "
                         f"{max(b.peak for b in f.contaminated):.3f} left out of the fit")
        lines.append(f'"{r.label}" = {r.threshold!r}')
    return "\n".join(lines) + "\n"


def default_out(cfg: Config) -> Path:
    """Where the daemon will find it (`cfg`: the view of one source): calibration.file when the config names one,
    else the state directory's calibration.toml (a named source's: calibration-<id>.toml)."""
    return calibration_target(cfg.calibration, source=cfg.source_id) or \
        state_directory() / calibration_name(cfg.source_id)


def source_view(cfg: Config, asked: str | None) -> Config:
    """The config as the source being calibrated sees it: --source ID of a [[sources]] config, or its only source.
    Several sources and no --source is an InputError naming them: each is calibrated on its own background."""
    ids = [s.id for s in cfg.sources if s.id]
    if asked is None:
        if len(cfg.sources) > 1:
            raise InputError(f"{cfg.path} has {len(ids)} sources ({', '.join(ids)}): calibrate one at a time with "
                             "--source ID (each on its own background)")
        return cfg.views()[0]
    if not ids:
        raise InputError(f"--source {asked}: {cfg.path} has no [[sources]] (its one source is [audio]): leave "
                         "--source out")
    view = next((v for v in cfg.views() if v.source_id == asked), None)
    if view is None:
        raise InputError(f"--source {asked}: not a source of {cfg.path} (its sources: {', '.join(ids)})")
    return view


def chosen_labels(cfg: Config, classifier: Classifier, asked: list[str] | None) -> list[str]:
    from ...core.detector import resolve_labels
    if asked:
        return [classifier.labels[i] for i in resolve_labels(asked, classifier.labels, "--label")]
    if not cfg.detector.allow:
        raise InputError(f"{cfg.path}: no watched labels to calibrate: set detector.allow or pass --label")
    return watched_labels(cfg, classifier.labels)


def positive_files(folder: str, labels: list[str], all_labels: list[str]) -> list[tuple[str, str]]:
    """(label, WAV path) for DIR/<label>/*.wav; a folder that names no watched label is an InputError."""
    from ...core.detector import resolve_labels
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--positives {folder}: not a folder (expected {folder}/<label>/*.wav)")
    found = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        label = all_labels[resolve_labels([sub.name], all_labels, f"--positives {sub}")[0]]
        if label not in labels:
            raise InputError(f"--positives {sub}: {label!r} is not a label being calibrated "
                             f"({', '.join(labels)})")
        found += [(label, str(w)) for w in sorted(sub.glob("*.wav"))]
    if not found:
        raise InputError(f"--positives {folder}: no <label>/*.wav files in it")
    return found


def add_parser(sub) -> None:
    p = add_command(sub, "calibrate", "per-label thresholds from this site's background audio",
                    "Listen to the site's background (the configured source, or WAV recordings) through the "
                    "daemon's own path, fit the tail of each watched label's smoothed score and choose the lowest "
                    "start threshold that keeps the expected false starts under the target. Writes a TOML file the "
                    "daemon loads beside its config (default: calibration.toml in the state directory) and a plot "
                    "per label. A config with several [[sources]] is calibrated one source at a time (--source ID: "
                    "each has its own background, recordings and file, calibration-<id>.toml; with several sources "
                    "and no --source it names them and stops, exit 2); `deploy --calibrate` runs each in turn.",
                    ["edge-audio calibrate --config /etc/edge-audio/pi4-usb-coral.toml --minutes 60",
                     "edge-audio calibrate --config four-sources.toml --source porch --minutes 60",
                     "edge-audio calibrate --config site.toml --wav quiet-evening.wav quiet-morning.wav "
                     "--positives clips/",
                     "(clips/<label>/*.wav: recordings of each watched sound, for the recall figures)"])
    p.add_argument("--config", required=True, metavar="FILE", help="the daemon's TOML configuration")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--minutes", type=float, metavar="M", help="listen to the configured source for M minutes")
    src.add_argument("--wav", nargs="+", metavar="FILE", help="background recordings instead of listening")
    p.add_argument("--source", metavar="ID", help="the [[sources]] id to calibrate (required with several sources: "
                                                 "each is calibrated on its own background, one at a time)")
    p.add_argument("--positives", metavar="DIR", help="DIR/<label>/*.wav: the watched sounds, for recall figures")
    p.add_argument("--label", action="append", metavar="NAME",
                   help="calibrate this label (repeatable; default: detector.allow)")
    p.add_argument("--false-starts-per-day", type=float, default=DEFAULT_TARGET_PER_DAY, metavar="N",
                   help="target per label (default: 1)")
    p.add_argument("--out", metavar="FILE", help="where to write (default: calibration.file, else "
                                                 "calibration.toml in the state directory; for a named source "
                                                 "its [sources.calibration] file, else calibration-<id>.toml)")
    p.add_argument("--plots", metavar="DIR", help="folder for the PNGs (default: beside --out)")
    p.add_argument("--no-plots", action="store_true", help="draw no plots")
    p.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    target = target_per_day(args.false_starts_per_day)
    if args.minutes is not None:
        listen_minutes(args.minutes)
    if args.wav:
        check_wavs(args.wav)
    cfg = source_view(load_config(args.config), args.source)
    classifier = Classifier.from_config(cfg.model)
    labels = chosen_labels(cfg, classifier, args.label)
    pos = positive_files(args.positives, labels, classifier.labels) if args.positives else []
    check_wavs([w for _, w in pos])
    layers = layers_for(cfg, classifier)
    current = {l: layers.source(l)[0] for l in labels}
    say(classifier.describe())
    if args.wav:
        source = f"{len(args.wav)} WAV file(s)"
        heard = hear_files(cfg, classifier, layers, labels, args.wav, _file_progress(say, "background"))
        where = args.wav[0] if len(args.wav) == 1 else f"{len(args.wav)} WAV files"
    else:
        source = f"{args.minutes:g} min live from {cfg.audio.describe()}"
        hint = " (Ctrl-C ends early and uses what was heard)" if sys.stderr.isatty() else ""  # not when run for deploy
        say(f"listening to {cfg.audio.describe()} for {args.minutes:g} min: keep the watched sounds away{hint}")
        heard = hear_live(cfg, classifier, layers, labels, args.minutes, _live_progress(say, cfg, args.minutes))
        where = cfg.audio.describe()
        if heard.stopped_early:
            say(f"stopped early ({heard.stopped_early}) after {heard.windows} windows")
    if cfg.source_id:
        source, where = f"source {cfg.source_id}: {source}", f"sources.{cfg.source_id}: {where}"
    heard.check_not_silent(where, cfg.detector.min_level_dbfs)
    positives = None
    if pos:
        positives = hear_files(cfg, classifier, layers, labels, [w for _, w in pos],
                               _file_progress(say, "positives"))
    results = calibrate_labels(cfg, heard, target, current, positives, [l for l, _ in pos])
    print(report(results, heard, cfg, target, source), flush=True)
    for r in results:
        if r.fit.problem:
            say(f"{r.label}: not calibrated: {r.fit.problem}")
        if r.fit.contaminated:
            say("warning: " + contamination_note(r, heard, cfg.model.hop_seconds))
        value, layer = layers.source(r.label)
        if layer == USER:
            say(f"{r.label}: the config's detector.thresholds sets {value:g}, which overrides this calibration")
    if args.dry_run:
        return 0
    out = Path(args.out) if args.out else default_out(cfg)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        replace_file(out, toml_text(results, heard, cfg, target, source, classifier.model_name,
                                        classifier.model_digest))
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None
    say(f"wrote {out}" + ("" if args.out or cfg.calibration.file else " (the daemon loads it from there)"))
    if not args.no_plots:
        from .plot import draw_all
        say(draw_all(results, heard, cfg, target, Path(args.plots) if args.plots else out.parent,
                     statistics, positives is not None))
    return 0


def _file_progress(say, what: str):
    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            say(f"{what}: {done}/{total} files")
    return progress


def _live_progress(say, cfg: Config, minutes: float):
    every = max(1, int(round(min(60.0, minutes * 6.0) / cfg.model.hop_seconds)))  # every 10 %, at least each min
    total = minutes * 60

    def progress(windows: int, level: float) -> None:
        if windows % every == 0:
            heard_s = windows * cfg.model.hop_seconds
            say(f"listening: {heard_s / 60:.1f} / {total / 60:.1f} min ({windows} windows, now {level:.0f} dBFS)")
    return progress
