"""The Edge TPU delegate is probed before it is trusted.

A mismatched libedgetpu / interpreter pair segfaults inside load_delegate, which no Python code can catch, so
before the delegate is loaded in the process that needs it, a child process (the same Python, the same backend)
loads the library, reports the label edgetpu_version() returns, then creates the delegate and runs one invoke of
the model, under a timeout. The parent reads the outcome:

    ok          the child loaded the delegate and the invoke returned
    crashed     the child died by a signal (SIGSEGV, SIGABRT, ...)
    hung        no answer within the timeout (the child is killed)
    failed      the child reported an error (no delegate, an invoke error, a broken backend)
    known-bad   the compatibility table marks this build with this backend as known-bad; the child is told
                to stop before it creates the delegate

The verdict is cached on disk per (backend and version, sha256 of the library file, sha256 of the model, device),
so a restart does not pay for it again. 'failed' is not cached: it usually means the TPU is unplugged or not
accessible, which the next start should look at again.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..core.errors import DelegateError
from ..core.files import replace_file, sha256_hex
from ..core.paths import cache_dir  # the verdicts' folder (edge/core/paths.py)
from . import compat, edgetpu
from .bundle import sha256_file
from .runtime import Backend

OK, CRASHED, HUNG, FAILED, KNOWN_BAD = "ok", "crashed", "hung", "failed", compat.KNOWN_BAD
CACHED = (OK, CRASHED, HUNG, KNOWN_BAD)
TIMEOUT_S = 20.0  # loading the interpreter and the first invoke (it uploads the model to the TPU) take seconds
ENV_TIMEOUT = "EDGE_AUDIO_PROBE_TIMEOUT"
FIX = "install a matched pair, see firmware_configs/README.md ('edge-audio doctor' prints the install line)"


@dataclass(frozen=True)
class ProbeResult:
    verdict: str
    detail: str  # the signal, the error line or the timeout
    build: compat.RuntimeBuild
    backend: str  # e.g. 'ai_edge_litert 2.3.0'
    table: str  # what the compatibility table says of the pair
    elapsed_s: float
    invoke_ms: float | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.verdict == OK

    def reason(self) -> str:
        """One line: what happened and how to fix it."""
        what, how = self.build.describe(), self._how()
        if self.verdict == OK:
            return f"{what} passed a probe under {self.backend}{how}"
        if self.verdict == KNOWN_BAD:
            return (f"{what} is known-bad with {self.backend} in the compatibility table{how}, so it is not "
                    f"loaded: {FIX}")
        if self.verdict == FAILED:
            return (f"{what} failed in a probe under {self.backend} ({self.detail}){how}: check the TPU's cable "
                    "and permissions with 'edge-audio doctor'")
        verb = "crashed" if self.verdict == CRASHED else "hung"
        return f"{what} {verb} in a probe under {self.backend} ({self.detail}){how}: {FIX}"

    def _how(self) -> str:
        return " (cached verdict)" if self.cached else f" (probed in {self.elapsed_s:.2f} s)"

    def summary(self) -> str:
        """For doctor and metrics: the verdict and where it came from."""
        return f"{self.verdict}{self._how()}"


# -- the cache ---------------------------------------------------------------------------------------------------
def cache_key(backend: Backend, library: str, model: Path, device: str) -> str:
    parts = [backend.name, backend.version, sha256_file(library), sha256_file(model), device]
    return sha256_hex(json.dumps(parts).encode())[:32]


def read_cached(key: str) -> ProbeResult | None:
    try:
        data = json.loads((cache_dir() / "probe" / f"{key}.json").read_text())
        build = compat.RuntimeBuild(**data.pop("build"))
        return replace(ProbeResult(build=build, **data), cached=True)
    except (OSError, ValueError, TypeError):
        return None  # absent or unreadable: probe again


def write_cached(key: str, result: ProbeResult) -> None:
    folder = cache_dir() / "probe"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        replace_file(folder / f"{key}.json", json.dumps(asdict(result)))
    except OSError:
        pass  # a read-only home costs a probe per start, nothing else


# -- the check ---------------------------------------------------------------------------------------------------
def timeout_seconds() -> float:
    raw = os.environ.get(ENV_TIMEOUT, "")
    try:
        return float(raw) if raw else TIMEOUT_S
    except ValueError:
        raise DelegateError(f"{ENV_TIMEOUT}={raw!r} is not a number of seconds") from None


def check(backend: Backend, model: Path, device: str, library: str, fresh: bool = False) -> ProbeResult:
    """The verdict on loading the Edge TPU delegate from `library` for `model` with `backend`: the cached one
    unless `fresh`, else a child process's."""
    key = cache_key(backend, library, model, device)
    if not fresh and (cached := read_cached(key)) is not None:
        return cached
    result = run_child(backend, library, model, device, timeout_seconds())
    if result.verdict in CACHED:
        write_cached(key, result)
    return result


def child_command(backend: Backend, library: str, model: Path, device: str) -> list[str]:
    return [sys.executable, "-m", "edge.model.edgetpu_probe", "--child", backend.name, library, str(model), device]


def child_env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the child imports this same copy of the kit
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def run_child(backend: Backend, library: str, model: Path, device: str, timeout_s: float) -> ProbeResult:
    started = time.monotonic()
    deadline = started + timeout_s
    build = compat.RuntimeBuild(package=edgetpu.runtime_package(), path=library)
    table = compat.lookup(build, backend.name, backend.version)
    try:
        proc = subprocess.Popen(child_command(backend, library, model, device), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
                                start_new_session=True)
    except OSError as exc:
        return ProbeResult(FAILED, f"cannot start {sys.executable}: {exc.strerror}", build, str(backend),
                           table.describe(), 0.0)
    lines: queue.Queue = queue.Queue()
    errors: list[str] = []
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    threading.Thread(target=_collect, args=(proc.stderr, errors), daemon=True).start()

    def finish(verdict: str, detail: str, invoke_ms: float | None = None) -> ProbeResult:
        _stop(proc)
        return ProbeResult(verdict, detail, build, str(backend), table.describe(), time.monotonic() - started,
                           invoke_ms)

    report = _next(lines, deadline)
    if report is not None and report.get("stage") == "loaded":
        build = replace(build, label=report.get("label", ""), path=report.get("path") or library)
        table = compat.lookup(build, backend.name, backend.version)
        if table.verdict == compat.KNOWN_BAD:
            return finish(KNOWN_BAD, table.describe())
        try:
            proc.stdin.write("go\n")
            proc.stdin.close()
        except OSError:
            pass  # it died meanwhile: the exit status says how
        report = _next(lines, deadline)
    if report is None:
        return finish(*_ended(proc, deadline, errors, timeout_s))
    if report.get("ok"):
        return finish(OK, "one invoke returned", report.get("invoke_ms"))
    return finish(FAILED, report.get("error", "no detail"))


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _collect(stream, errors: list[str]) -> None:
    for line in stream:
        if line.strip() and not line.startswith("INFO: "):
            errors.append(line.strip())
            del errors[:-5]


def _next(lines: queue.Queue, deadline: float) -> dict | None:
    """The child's next report, or None when it ended or the deadline passed."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return None
        if line is None:
            return None
        try:
            report = json.loads(line)
        except ValueError:
            continue  # a library printing on stdout
        if isinstance(report, dict) and report.get("stage") in ("loaded", "done"):
            return report
    return None


def _ended(proc: subprocess.Popen, deadline: float, errors: list[str], timeout_s: float) -> tuple[str, str]:
    """Why the child stopped answering: a signal, an exit status, or the timeout."""
    try:
        code = proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return HUNG, f"no answer within {timeout_s:g} s"
    if code < 0:
        try:
            return CRASHED, signal.Signals(-code).name
        except ValueError:
            return CRASHED, f"signal {-code}"
    return FAILED, (errors[-1] if errors else f"exit status {code}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            stream.close()
        except (OSError, AttributeError):
            pass


# -- the child ---------------------------------------------------------------------------------------------------
def _emit(report: dict) -> None:
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


def child_main(argv: list[str]) -> int:
    """Load the library, report its label, wait for 'go', create the delegate and run one invoke."""
    backend_name, library, model, device = argv
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash is a possible answer: leave no core file
    except (ImportError, ValueError, OSError):
        pass
    try:
        lib = ctypes.CDLL(library)
        label = ""
        if hasattr(lib, "edgetpu_version"):
            lib.edgetpu_version.restype = ctypes.c_char_p
            label = (lib.edgetpu_version() or b"").decode(errors="replace")
        _emit({"stage": "loaded", "label": label, "path": _mapped_path(library)})
        if sys.stdin.readline().strip() != "go":
            return 0
        from .runtime import load_backend
        invoke_ms = _invoke_once(load_backend((backend_name,)), library, model, device)
    except Exception as exc:  # every failure is an answer to report, not a crash
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _emit({"stage": "done", "ok": False, "error": f"{exc.__class__.__name__}: {first}".rstrip(": ")})
        return 0
    _emit({"stage": "done", "ok": True, "invoke_ms": round(invoke_ms, 3)})
    return 0


def _invoke_once(backend: Backend, library: str, model: str, device: str) -> float:
    import numpy as np
    delegate = backend.load_delegate(library, {"device": device} if device else {})
    interpreter = backend.Interpreter(model_path=model, experimental_delegates=[delegate])
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    t = time.perf_counter()
    interpreter.invoke()
    spent = (time.perf_counter() - t) * 1e3
    interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return spent


def _mapped_path(library: str) -> str:
    """The file the dynamic loader mapped for `library` (Linux), else the name as given."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip() if line.count(" ") >= 5 else ""
                if path.startswith("/") and os.path.basename(path).startswith(os.path.basename(library)):
                    return path
    except OSError:
        pass
    return library


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2:]))
    print("usage: python -m edge.model.edgetpu_probe --child BACKEND LIBRARY MODEL DEVICE", file=sys.stderr)
    sys.exit(2)
