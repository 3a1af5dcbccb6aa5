"""`edge-audio doctor`: what this machine has (runtime, Edge TPU, ALSA, model bundle), the first thing to run when
the Coral is not detected. For the Edge TPU it shows the runtime pair (the libedgetpu build and the interpreter),
what the compatibility table says of it, the probe's verdict, the install line for this OS and Python, and
whether this user (and the service unit's groups) can open the TPU and the microphone. It says whether ffmpeg is
installed (a url source, a camera's audio, needs it); with --config, each source of that config and whether it opens
now (the ALSA device, the WAV file, the stream: its URL shown without credentials)."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

from .. import __version__
from ..audio import alsa
from ..bench.env import board_model
from ..core.errors import EdgeAudioError
from ..model import compat, edgetpu, edgetpu_probe
from ..model.bundle import ModelPair, default_bundle_path, load_bundle
from ..model.runtime import available_backends, load_backend
from . import access
from .command import add_command

UNIT_FILE = "/etc/systemd/system/edge-audio.service"


def add_parser(sub) -> None:
    p = add_command(sub, "doctor", "what this machine has: runtime, Edge TPU, ALSA, model bundle",
                    "Report the interpreter backend, the Edge TPU library and devices, ALSA capture devices and the "
                    "model bundle: the first thing to run when the Coral is not detected. With --config, also "
                    "each audio source of that config and whether it opens now.",
                    ["edge-audio doctor --json", "edge-audio doctor --config /opt/edge-audio/current/config.toml"])
    p.add_argument("--config", metavar="FILE", help="a daemon config: list its sources (every [[sources]] table) and "
                                                   "whether each opens now (exit 78 if the config is bad)")
    p.add_argument("--model", metavar="BUNDLE", help="bundle to check (default: the installed one)")
    p.add_argument("--backend", metavar="LIST", help="interpreter preference, comma separated")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args) -> int:
    cfg = None
    if args.config:
        from ..config import load_config
        cfg = load_config(args.config)  # a bad config: its one line, exit 78
    release = edgetpu.os_release()
    report: dict = {"edge_audio": __version__, "python": platform.python_version(),
                    "machine": f"{platform.system()} {platform.machine()}", "board": board_model() or "",
                    "os": release.get("PRETTY_NAME", "")}
    backends = available_backends()
    report["backends"] = dict(backends)
    backend = None
    try:
        backend = load_backend(args.backend)
        report["backend_in_use"] = str(backend)
    except EdgeAudioError as exc:
        report["backend_in_use"] = None
        report["backend_problem"] = str(exc)
    lib = edgetpu.locate_library()
    report["edgetpu_library"] = lib or f"{edgetpu.library_name()} not found"
    report["edgetpu_package"] = edgetpu.runtime_package() or None
    report["pycoral"] = "importable" if edgetpu.pycoral() is not None else "not installed"
    tpus = edgetpu.list_edge_tpus()
    report["edge_tpus"] = [f"{t.type} {t.path} {t.detail}".strip() for t in tpus]
    report["install_line"] = compat.install_line(release.get("VERSION_CODENAME", ""),
                                                 ".".join(platform.python_version_tuple()[:2]), platform.machine())
    devices, note = alsa.capture_devices()
    report["alsa_capture"] = devices
    report["alsa_note"] = note
    report["sound_cards"] = alsa.sound_cards()
    bundle_path = Path(args.model) if args.model else default_bundle_path()
    edgetpu_model = None
    try:
        if bundle_path.suffix == ".tflite":
            edgetpu_model = ModelPair.from_file(bundle_path).edgetpu
            report["model_bundle"] = {"path": str(bundle_path), "status": "a plain model file"}
        else:
            b = load_bundle(bundle_path)
            edgetpu_model = b.edgetpu_model
            report["model_bundle"] = {"path": str(bundle_path), "status": "ok (sha256 verified)", "name": b.name,
                                      "edgetpu_model": b.edgetpu_model.name if b.edgetpu_model else None,
                                      "cpu_model": b.cpu_model.name}
    except EdgeAudioError as exc:
        report["model_bundle"] = {"path": str(bundle_path), "status": f"problem: {exc}"}
    report["edgetpu_probe"] = _probe(backend, lib, tpus, edgetpu_model, report["edgetpu_package"] or "")
    report["device_access"] = _access(tpus)
    report["service_unit"] = _unit(tpus)
    report["ffmpeg"] = _ffmpeg(cfg)
    if cfg is not None:
        report["sources"] = _sources(cfg)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print(report, backends)
    return 0


def _ffmpeg(cfg) -> str:
    """Where ffmpeg is (the config's url sources may name another program), or that it is missing."""
    program = next((v.audio.ffmpeg for v in cfg.views() if v.audio.source == "url"), "ffmpeg") if cfg else "ffmpeg"
    return shutil.which(program) or (f"not installed ({program!r}: needed for url sources, a camera's audio; "
                                     "Debian: sudo apt install ffmpeg)")


def _sources(cfg) -> list[dict]:
    """Each source of the config opened and closed again, as selftest does it: what it is (a URL without its
    credentials), whether it opens, and why not."""
    from ..audio import make_source
    from .startup import check_source
    rows = []
    for view in cfg.views():
        where = view.where or "audio: "
        row = {"id": view.sources[0].name, "what": view.audio.describe(), "opens": False}
        warned: list[str] = []
        try:
            line = check_source(view, make_source(view.audio), warned.append)
            row["opens"] = " opens at " in line
            status = "; ".join(warned) or line
        except EdgeAudioError as exc:
            status = str(exc)
        for prefix in (f"{cfg.path}: ", where, f"{row['what']}: "):
            status = status[len(prefix):] if status.startswith(prefix) else status
        row["status"] = status
        rows.append(row)
    return rows


def _probe(backend, lib: str | None, tpus, model: Path | None, package: str) -> dict:
    """The table's verdict on the installed pair and the probe's (a child process: safe to run here)."""
    build = compat.RuntimeBuild(package=package, path=lib or "")
    if backend is None or lib is None:
        return {"verdict": "not run", "why": "no interpreter backend" if backend is None else "no libedgetpu"}
    table = compat.lookup(build, backend.name, backend.version)
    out = {"verdict": "not run", "pair": f"{build.describe()} with {backend}", "table": table.describe()}
    if not tpus:
        return dict(out, why="no Edge TPU found")
    if model is None:
        return dict(out, why="the model has no Edge TPU build")
    try:
        result = edgetpu_probe.check(backend, model, "", lib)
    except EdgeAudioError as exc:
        return dict(out, why=str(exc))
    return {"verdict": result.verdict, "detail": result.detail, "cached": result.cached,
            "elapsed_s": round(result.elapsed_s, 3), "label": result.build.label, "backend": result.backend,
            "pair": f"{result.build.describe()} with {result.backend}", "table": result.table,
            "reason": result.reason()}


def _access(tpus) -> list[dict]:
    nodes = [("Edge TPU", t.node) for t in tpus if t.node]
    nodes += [("microphone", n) for n in access.sound_nodes(edgetpu.dev_root())]
    return [{"what": what, "node": node, "status": access.check_node(node)} for what, node in nodes]


def _unit(tpus) -> dict | None:
    groups = access.unit_groups(UNIT_FILE)
    if groups is None:
        return None
    nodes = [t.node for t in tpus if t.node] + access.sound_nodes(edgetpu.dev_root())
    missing = sorted({g for g in (access.node_group(n) for n in nodes) if g and g not in groups})
    return {"path": UNIT_FILE, "groups": groups, "missing": missing}


def _print(report: dict, backends) -> None:
    print(f"edge-audio {report['edge_audio']}, Python {report['python']}, {report['machine']}"
          + (f", {report['board']}" if report["board"] else "") + (f", {report['os']}" if report["os"] else ""))
    for name, version in backends:
        print(f"  backend {name:15s} {version}")
    print(f"  in use          {report['backend_in_use'] or report.get('backend_problem')}")
    package = f" ({report['edgetpu_package']})" if report["edgetpu_package"] else ""
    print(f"  libedgetpu      {report['edgetpu_library']}{package}")
    pr = report["edgetpu_probe"]
    if pr.get("pair"):
        print(f"  runtime pair    {pr['pair']}")
        print(f"  table verdict   {pr['table']}")
    if pr["verdict"] == "not run":
        print(f"  probe           not run: {pr['why']}")
    else:
        print(f"  probe           {pr['verdict']}: {pr['reason']}")
    commands, _, note = report["install_line"].partition("  # ")  # the steps after the commands on a line of their own
    print(f"  install         {commands}")
    if note:
        print(f"                  {note}")
    print(f"  pycoral         {report['pycoral']} (optional; never 'pip install pycoral': that name is another project)")
    tpus = report["edge_tpus"]
    print(f"  Edge TPUs       {', '.join(tpus) if tpus else 'none found (USB 1a6e:089a / 18d1:9302, /dev/apex_*)'}")
    devices, note = report["alsa_capture"], report["alsa_note"]
    print(f"  ALSA capture    {', '.join(devices) if devices else 'none'}" + (f" ({note})" if note else ""))
    print(f"  sound cards     {'; '.join(report['sound_cards']) or 'none in /proc/asound/cards'}")
    for item in report["device_access"]:
        print(f"  {item['what']:<15s} {item['node']}: {item['status']}")
    if not any(i["what"] == "microphone" for i in report["device_access"]):
        print(f"  microphone      no capture device in {os.path.join(edgetpu.dev_root(), 'snd')}")
    unit = report["service_unit"]
    if unit is not None:
        lacks = f"; missing for the devices here: {', '.join(unit['missing'])}" if unit["missing"] else ""
        print(f"  service unit    {unit['path']}: SupplementaryGroups={' '.join(unit['groups'])}{lacks}")
    mb = report["model_bundle"]
    print(f"  model bundle    {mb['path']}: {mb['status']}")
    print(f"  ffmpeg          {report['ffmpeg']}")
    for row in report.get("sources", []):
        print(f"  source {row['id']:<8s} {row['what']}: {row['status']}")
