"""How long the Edge TPU probe takes, cold (a child process loads the runtime) and warm (the verdict comes from
the cache), printed as a figure, not asserted. No Coral here: the runtime is the fake build whose delegate entry
point segfaults (a mismatched pair), with a fake USB Coral, the real Coral YAMNet and the real interpreter.

    python tests/probe_timing.py [--repeat N]      (make bench-probe; needs EDGE_AUDIO_ASSETS and cc)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fakelib import fake_tpu_env  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    assets = Path(os.environ.get("EDGE_AUDIO_ASSETS", "../shared"))
    model = assets / "models" / "coral" / "yamnet_spectra_in_edgetpu.tflite"
    if not model.is_file():
        print(f"no {model}: set EDGE_AUDIO_ASSETS", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(fake_tpu_env("segv", Path(tmp)))
        from edge.model import edgetpu, edgetpu_probe
        from edge.model.runtime import load_backend
        backend = load_backend()
        library = edgetpu.locate_library()
        cold, warm = [], []
        for i in range(args.repeat):
            os.environ["EDGE_AUDIO_HOME"] = str(Path(tmp) / f"home{i}")  # an empty cache: a first start
            t = time.perf_counter()
            first = edgetpu_probe.check(backend, model, "usb:0", library)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            again = edgetpu_probe.check(backend, model, "usb:0", library)
            warm.append(time.perf_counter() - t)
            assert not first.cached and again.cached, (first, again)
        print(f"probe under {backend}, {first.verdict} ({first.detail}), {args.repeat} runs, median: "
              f"cold {statistics.median(cold) * 1e3:.0f} ms (child process), "
              f"warm {statistics.median(warm) * 1e3:.1f} ms (cached verdict: two sha256 of "
              f"{(Path(library).stat().st_size + model.stat().st_size) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
