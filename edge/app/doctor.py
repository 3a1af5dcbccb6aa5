"""`edge-audio doctor`: what this machine has (runtime, Edge TPU, ALSA, model bundle), the first thing to run when
the Coral is not detected."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from .. import __version__
from ..audio import alsa
from ..bench.env import board_model
from ..core.errors import EdgeAudioError
from ..model import edgetpu
from ..model.bundle import default_bundle_path, load_bundle
from ..model.runtime import available_backends, load_backend


def cmd_doctor(args) -> int:
    report: dict = {"edge_audio": __version__, "python": platform.python_version(),
                    "machine": f"{platform.system()} {platform.machine()}", "board": board_model() or ""}
    backends = available_backends()
    report["backends"] = dict(backends)
    try:
        report["backend_in_use"] = str(load_backend(args.backend))
    except EdgeAudioError as exc:
        report["backend_in_use"] = None
        report["backend_problem"] = str(exc)
    lib = edgetpu.find_library()
    report["edgetpu_library"] = lib or f"{edgetpu.library_name()} not found"
    report["pycoral"] = "importable" if edgetpu.pycoral() is not None else "not installed"
    report["edge_tpus"] = [f"{t.type} {t.path} {t.detail}".strip() for t in edgetpu.list_edge_tpus()]
    devices, note = alsa.capture_devices()
    report["alsa_capture"] = devices
    report["alsa_note"] = note
    report["sound_cards"] = alsa.sound_cards()
    bundle_path = Path(args.model) if args.model else default_bundle_path()
    try:
        b = load_bundle(bundle_path)
        report["model_bundle"] = {"path": str(bundle_path), "status": "ok (sha256 verified)", "name": b.name,
                                  "edgetpu_model": b.edgetpu_model.name if b.edgetpu_model else None,
                                  "cpu_model": b.cpu_model.name}
    except EdgeAudioError as exc:
        report["model_bundle"] = {"path": str(bundle_path), "status": f"problem: {exc}"}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"edge-audio {report['edge_audio']}, Python {report['python']}, {report['machine']}"
          + (f", {report['board']}" if report["board"] else ""))
    for name, version in backends:
        print(f"  backend {name:15s} {version}")
    print(f"  in use          {report['backend_in_use'] or report.get('backend_problem')}")
    print(f"  libedgetpu      {report['edgetpu_library']}"
          + ("" if lib else f"\n                  -> {edgetpu.INSTALL_HINT}"))
    print(f"  pycoral         {report['pycoral']} (optional; never 'pip install pycoral': that name is another project)")
    tpus = report["edge_tpus"]
    print(f"  Edge TPUs       {', '.join(tpus) if tpus else 'none found (USB 1a6e:089a / 18d1:9302, /dev/apex_*)'}")
    print(f"  ALSA capture    {', '.join(devices) if devices else 'none'}" + (f" ({note})" if note else ""))
    print(f"  sound cards     {'; '.join(report['sound_cards']) or 'none in /proc/asound/cards'}")
    mb = report["model_bundle"]
    print(f"  model bundle    {mb['path']}: {mb['status']}")
    return 0
