"""The benchmark result: its JSON schema, a validator, comparisons against a saved result or a board's
reference figures, the text table and the optional latency plot."""

from __future__ import annotations

import json
import platform
from importlib import resources
from pathlib import Path

from ..core.errors import InputError, read_input_file

SCHEMA_VERSION = 1
KIND = "edge-audio.bench"
PROFILE_KIND = "edge-audio.bench-reference"
# the figures compared: (json path, direction) -- "lower" means lower is better. --check compares with figures from
# another machine of the class, often busier or quieter: only ratios measured within one run (paired rounds of
# bare invoke and pipeline), which a busy machine does not move. --compare (the same machine, a saved result) also
# looks at the absolute times.
RATIOS = (("e2e_over_invoke.median", "lower"), ("frontend_over_invoke.median", "lower"))
ABSOLUTE = (("invoke_ms.p50", "lower"), ("e2e_ms.p50", "lower"), ("frontend_ms.p50", "lower"))
CHECKED = RATIOS
COMPARED = ABSOLUTE + RATIOS
DEFAULT_TOLERANCE = 0.15
PROFILE_DIR = Path(str(resources.files(__package__).joinpath("profiles")))  # package data, installed with the wheel

_NUM = {"type": ["number", "null"]}
_RATIO = {"type": ["object", "null"], "required": ["median", "min", "max", "rounds"],
          "properties": {"median": {"type": "number"}, "min": {"type": "number"}, "max": {"type": "number"},
                         "rounds": {"type": "integer", "minimum": 1}}}
_STATS = {"type": ["object", "null"], "required": ["n", "mean", "std", "min", "p50", "p90", "p99", "max"],
          "properties": {"n": {"type": "integer", "minimum": 0}, **{k: _NUM for k in
                                                                     ("mean", "std", "min", "p50", "p90", "p99",
                                                                      "max")}}}
_OK_RUN = ["model", "delegate", "threads", "backend", "init_ms", "first_invoke_ms", "warmup", "invoke_ms",
           "frontend_ms", "e2e_ms", "windows", "windows_per_s", "rtf", "cpu_ms_per_audio_s", "realtime", "alloc",
           "peak_rss_mb"]

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edge-audio bench result",
    "type": "object",
    "required": ["kind", "schema_version", "created", "environment", "settings", "runs"],
    "properties": {
        "kind": {"const": KIND},
        "schema_version": {"const": SCHEMA_VERSION},
        "created": {"type": "string"},
        "environment": {
            "type": "object",
            "required": ["edge_audio", "python", "machine", "board", "cpu", "governor", "temperature_c",
                         "throttling", "backend", "libedgetpu", "edge_tpus"],
            "properties": {
                "board": {"type": ["string", "null"]}, "cpu": {"type": ["string", "null"]},
                "governor": {"type": ["string", "null"]}, "temperature_c": {"type": "object"},
                "throttling": {"type": ["object", "null"]},
                "libedgetpu": {"type": "object", "required": ["library", "package"]},
                "edge_tpus": {"type": "array", "items": {"type": "object", "required": ["type", "path", "detail"]}},
            },
        },
        "settings": {
            "type": "object",
            "required": ["model", "audio", "hop_seconds", "seconds", "realtime_seconds", "delegates", "threads"],
            "properties": {"hop_seconds": {"type": "number", "minimum": 0}, "seconds": {"type": "number"},
                           "delegates": {"type": "array", "items": {"type": "string"}},
                           "threads": {"type": "array", "items": {"type": "integer", "minimum": 1}}},
        },
        "warnings": {"type": "array", "items": {"type": "string"}},
        "runs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["status", "delegate", "threads"],
                "properties": {
                    "status": {"enum": ["ok", "unavailable", "failed"]},
                    "delegate": {"type": "string"},
                    "threads": {"type": "integer", "minimum": 1},
                    "reason": {"type": "string"},
                    "model": {"type": "string"},
                    "backend": {"type": "object", "required": ["name", "version"]},
                    "init_ms": _NUM, "first_invoke_ms": _NUM,
                    "warmup": {"type": "object", "required": ["invokes", "mean_ms"]},
                    "invoke_ms": _STATS, "frontend_ms": _STATS, "framing_ms": _STATS, "io_ms": _STATS,
                    "callback_ms": _STATS, "e2e_ms": _STATS,
                    "rounds": {"type": "integer", "minimum": 1},
                    "e2e_over_invoke": _RATIO, "frontend_over_invoke": _RATIO,
                    "windows": {"type": "integer", "minimum": 0},
                    "windows_per_s": _NUM, "rtf": _NUM, "cpu_ms_per_window": _NUM, "cpu_ms_per_audio_s": _NUM,
                    "realtime": {"type": "object", "required": ["seconds", "cpu_percent", "windows", "late_chunks"]},
                    "alloc": {"type": "object", "required": ["windows", "bytes_per_window", "transient_peak_bytes"]},
                    "peak_rss_mb": _NUM,
                },
                "if": {"properties": {"status": {"const": "ok"}}},
                "then": {"required": _OK_RUN},
                "else": {"required": ["reason"]},
            },
        },
        "comparison": {"type": "object"},
    },
}

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def validate(doc, schema: dict = SCHEMA, where: str = "$") -> list[str]:
    """Problems with `doc` against the subset of JSON Schema used above (type, const, enum, required,
    properties, items, minimum, if/then/else). An empty list means valid."""
    problems = []
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(doc, t) for t in names):
            return [f"{where}: expected {' or '.join(names)}, got {type(doc).__name__}"]
    if "const" in schema and doc != schema["const"]:
        problems.append(f"{where}: expected {schema['const']!r}, got {doc!r}")
    if "enum" in schema and doc not in schema["enum"]:
        problems.append(f"{where}: {doc!r} is not one of {schema['enum']}")
    if "minimum" in schema and isinstance(doc, (int, float)) and doc < schema["minimum"]:
        problems.append(f"{where}: {doc} is below {schema['minimum']}")
    if isinstance(doc, dict):
        for key in schema.get("required", []):
            if key not in doc:
                problems.append(f"{where}: missing {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in doc:
                problems += validate(doc[key], sub, f"{where}.{key}")
        if "if" in schema:
            branch = "then" if not validate(doc, schema["if"], where) else "else"
            if branch in schema:
                problems += validate(doc, schema[branch], where)
    if isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            problems += validate(item, schema["items"], f"{where}[{i}]")
    return problems


def _is_type(value, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def load_result(path: str | Path) -> dict:
    """A saved `bench --json` result, validated; InputError (exit 2) when it is not one."""
    raw = read_input_file(Path(path), InputError, "bench result")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    problems = validate(doc)
    if problems:
        raise InputError(f"{path}: not an edge-audio bench result (schema {SCHEMA_VERSION}): {problems[0]}"
                         + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    return doc


def figure(run: dict, path: str):
    value = run
    for part in path.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            return None
        value = value[part]
    return value


def _key(run: dict) -> tuple:
    return (run.get("model"), run.get("delegate"), run.get("threads"))


def compare_runs(runs: list[dict], references: list[dict], tolerance: float, figures: tuple = COMPARED) -> dict:
    """Each of `figures` of each measured run against the reference run with the same model, delegate and
    threads. A figure regresses when it is worse than reference x (1 + tolerance)."""
    by_key = {_key(r): r for r in references}
    rows, missing = [], []
    for run in runs:
        if run.get("status") != "ok":
            continue
        ref = by_key.get(_key(run))
        if ref is None:
            continue
        for path, direction in figures:
            got, want = figure(run, path), figure(ref, path)
            if got is None or want is None or want <= 0:
                continue
            ratio = got / want
            bad = ratio > 1 + tolerance if direction == "lower" else ratio < 1 - tolerance
            rows.append({"model": run["model"], "delegate": run["delegate"], "threads": run["threads"],
                         "figure": path, "reference": want, "measured": got, "ratio": ratio,
                         "status": "regression" if bad else "ok"})
    measured = {_key(r) for r in runs if r.get("status") == "ok"}
    for ref in references:
        if _key(ref) not in measured:
            missing.append("{} {} x{}".format(*_key(ref)))
    return {"tolerance": tolerance, "rows": rows, "not_measured": missing,
            "regressions": sum(r["status"] == "regression" for r in rows)}


# -- board reference profiles ---------------------------------------------------------------------------------
def load_profile(path: Path) -> dict:
    raw = read_input_file(path, InputError, "bench reference profile")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != PROFILE_KIND or doc.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path}: not a bench reference profile (kind {PROFILE_KIND!r}, schema {SCHEMA_VERSION})")
    figs = doc.get("figures")
    if not isinstance(figs, list) or not figs:
        raise InputError(f"{path}: 'figures' must be a non-empty list")
    for i, f in enumerate(figs):
        if not isinstance(f, dict) or not all(k in f for k in ("model", "delegate", "threads")):
            raise InputError(f"{path}: figures[{i}] needs model, delegate and threads")
    tol = doc.get("tolerance", DEFAULT_TOLERANCE)
    if not isinstance(tol, (int, float)) or not 0 < tol < 10:
        raise InputError(f"{path}: tolerance must be a fraction such as 0.2")
    doc.setdefault("name", path.stem)
    doc["path"] = str(path)
    return doc


def _json_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".json"))


def profile_names(folder: Path = PROFILE_DIR) -> list[str]:
    return sorted(p.stem for p in _json_files(folder))


def find_profile(name: str | None, board: str | None, machine: str | None = None,
                 folder: Path = PROFILE_DIR) -> dict:
    """By --profile NAME (or a path), else the profile whose `match.board` names this board (the text of
    /proc/device-tree/model), else, on a machine without a device tree, one matching `match.machine`."""
    if name:
        path = Path(name)
        if path.suffix == ".json" or "/" in name:
            return load_profile(path)
        if not (folder / f"{name}.json").is_file():
            raise InputError(f"no bench reference profile {name!r}; available: {', '.join(profile_names(folder))}")
        return load_profile(folder / f"{name}.json")
    machine = machine or platform.machine()
    if not folder.is_dir():
        raise InputError(f"no reference profiles at {folder}: pass --profile path/to/profile.json")
    profiles = [load_profile(p) for p in _json_files(folder)]
    for prof in profiles:
        if board and any(s.lower() in board.lower() for s in prof.get("match", {}).get("board", [])):
            return prof
    if not board:
        for prof in profiles:
            m = prof.get("match", {})
            if not m.get("board") and machine in m.get("machine", []):
                return prof
    raise InputError(f"no bench reference profile matches this machine ({board or machine}); pass --profile NAME "
                     f"(available: {', '.join(p['name'] for p in profiles) or 'none'})")


def profile_from_result(result: dict, name: str, tolerance: float) -> dict:
    """A reference profile made from a measured result (for `bench --write-profile`)."""
    env = result["environment"]
    figs = []
    for run in result["runs"]:
        if run.get("status") != "ok":
            continue
        entry = {"model": run["model"], "delegate": run["delegate"], "threads": run["threads"]}
        for path, _ in COMPARED:  # the ratios are checked; the times are there to read
            value = figure(run, path)
            if value is not None:
                entry[path.replace(".", "_")] = round(value, 4)
        figs.append(entry)
    return {"kind": PROFILE_KIND, "schema_version": SCHEMA_VERSION, "name": name,
            "description": f"measured with edge-audio {env['edge_audio']} on {env['board'] or env['cpu']}",
            "measured": True, "match": {"board": [env["board"]] if env["board"] else [],
                                        "machine": [env["machine"]]},
            "tolerance": tolerance, "figures": figs}


def profile_references(profile: dict) -> list[dict]:
    """The profile's figures as run-shaped dicts that compare_runs understands."""
    refs = []
    for f in profile["figures"]:
        run = {"status": "ok", "model": f["model"], "delegate": f["delegate"], "threads": f["threads"]}
        for path, _ in COMPARED:
            value = f.get(path.replace(".", "_"))
            if value is not None:
                head, tail = path.split(".")
                run.setdefault(head, {})[tail] = value
        refs.append(run)
    return refs


# -- text -----------------------------------------------------------------------------------------------------
def _f(value, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def text_report(result: dict) -> list[str]:
    env = result["environment"]
    s = result["settings"]
    tpus = ", ".join(f"{t['type']} {t['detail'] or t['path']}" for t in env["edge_tpus"]) or "none"
    lib = env["libedgetpu"]
    lines = [f"board {env['board'] or '(no device tree)'}; CPU {env['cpu']} x{env['cpu_count']}; governor "
             f"{env['governor'] or 'n/a'}; temperature "
             + (", ".join(f"{k} {v:.0f} C" for k, v in env["temperature_c"].items()) or "n/a")
             + f"; throttling {', '.join(env['throttling']['flags']) or 'none' if env['throttling'] else 'n/a'}",
             f"libedgetpu {lib['library'] or 'not found'}" + (f" ({lib['package']})" if lib["package"] else "")
             + f"; Edge TPUs: {tpus}",
             f"audio {s['audio']}, hop {s['hop_seconds']} s; {s['seconds']:g} s per loop, "
             f"{s['realtime_seconds']:g} s at real time"]
    for w in result.get("warnings", []):
        lines.append(f"warning: {w}")
    for run in result["runs"]:
        head = f"{run.get('model', s['model'])} on {run['delegate']} x{run['threads']}"
        if run["status"] != "ok":
            lines.append(f"{head}: {run['status']}: {run['reason']}")
            continue
        be = run["backend"]
        rt = run["realtime"]
        lines.append(f"{head} ({be['name']} {be['version']}): init {run['init_ms']:.1f} ms, first invoke "
                     f"{run['first_invoke_ms']:.2f} ms, warm-up {run['warmup']['invokes']} x "
                     f"{run['warmup']['mean_ms']:.3f} ms")
        lines.append(f"  {'ms per window':16s} {'mean':>8s} {'std':>8s} {'min':>8s} {'p50':>8s} {'p90':>8s} "
                     f"{'p99':>8s} {'max':>8s} {'n':>7s}")
        for name, label in (("invoke_ms", "invoke (bare)"), ("frontend_ms", "front end"),
                            ("framing_ms", "source+ring"), ("io_ms", "input+scores"), ("callback_ms", "detector"),
                            ("e2e_ms", "end to end")):
            st = run.get(name)
            if not st or not st["n"]:
                continue
            lines.append(f"  {label:16s} " + " ".join(_f(st[k], "{:8.3f}") for k in
                                                       ("mean", "std", "min", "p50", "p90", "p99", "max"))
                         + f" {st['n']:7d}")
        onsets, grid = run.get("onset_windows"), run["windows"]
        lines.append(f"  {run['windows_per_s']:.0f} windows/s of the hop grid"
                     + (f" (plus {onsets / grid:.2f} onset windows per grid window)" if onsets and grid else "")
                     + f", real-time factor {_f(run['rtf'], '{:.5f}')} "
                     f"({_f(1 / run['rtf'] if run['rtf'] else None, '{:.0f}')}x faster than real time)")
        for key, what in (("e2e_over_invoke", "end to end / bare invoke"), ("frontend_over_invoke",
                                                                           "front end / bare invoke")):
            r = run.get(key)
            if r:
                lines.append(f"  {what} (p50s, {r['rounds']} paired rounds): median {r['median']:.3f}x, range "
                             f"{r['min']:.3f}-{r['max']:.3f}x")
        lines.append(f"  CPU at real time {_f(rt['cpu_percent'], '{:.2f}')} % of one core"
                     + (f" ({rt['late_chunks']} chunks late)" if rt["late_chunks"] else "")
                     + f"; CPU {_f(run['cpu_ms_per_audio_s'], '{:.2f}')} ms per audio second; "
                     f"peak RSS {run['peak_rss_mb']:.1f} MB; allocation {run['alloc']['bytes_per_window']:.1f} "
                     f"B kept per window, transient peak {run['alloc']['transient_peak_bytes']} B")
    return lines


def comparison_lines(comp: dict, against: str) -> list[str]:
    lines = [f"against {against} (tolerance {comp['tolerance'] * 100:.0f} %):"]
    for r in comp["rows"]:
        unit = "x " if r["figure"].endswith(".median") else "ms"
        lines.append(f"  {r['model']} {r['delegate']} x{r['threads']} {r['figure']:27s} {r['measured']:8.3f} vs "
                     f"{r['reference']:8.3f} {unit} ({r['ratio']:.2f}x) "
                     f"{r['status'].upper() if r['status'] != 'ok' else 'ok'}")
    for m in comp["not_measured"]:
        lines.append(f"  {m}: not measured in this run (no reference check)")
    if not comp["rows"]:
        lines.append("  nothing to compare: no run matches a reference (model, delegate, threads)")
    lines.append(f"  {comp['regressions']} regression(s)" if comp["regressions"] else "  no regression")
    return lines


def plot_latency(result: dict, samples: dict, path: Path) -> str:
    """A PNG of the per-window latency distributions. Returns a note when matplotlib is absent."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install matplotlib)"
    import numpy as np
    series = {k: np.asarray(v) for k, v in samples.items() if len(v)}
    # the x axis stops a little past the largest p99: a single 40 ms stall would squash everything else
    top = 1.3 * max((float(np.percentile(v, 99)) for v in series.values()), default=1.0)
    bins = np.linspace(0.0, top, 120)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for label, values in series.items():
        beyond = int((values > top).sum())
        ax.hist(np.minimum(values, top), bins=bins, histtype="step",
                label=f"{label} (p50 {np.median(values):.3f} ms" + (f", {beyond} beyond the axis)" if beyond else ")"))
    ax.set_xlabel("ms per window")
    ax.set_ylabel("windows")
    ax.set_yscale("log")
    ax.set_title(f"edge-audio bench: {result['settings']['model']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the plot ({exc.strerror})") from None
    finally:
        plt.close(fig)
    return f"latency plot written to {path}"
