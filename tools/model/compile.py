"""`compile`: run Coral's edgetpu_compiler on a model or bundle and write a bundle that keeps the CPU fallback.

edgetpu_compiler writes `<stem>_edgetpu.tflite` and `<stem>_edgetpu.log` into its --out_dir. The log is a version
line, `Input:`/`Output:` lines, then an `Operator  Count  Status` table; its stdout adds the on-chip/off-chip
memory figures. Without the compiler the bundle still gets the CPU model and the static report (tools.model.check).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge.app.command import add_command, sayer
from edge.core.errors import InputError, ModelError
from edge.core.frontend import FrontEndParams
from edge.model.bundle import bundle_files, resolve_model, write_manifest
from edge.model.classifier import input_kind_of
from edge.model.tflite_file import EDGETPU_CUSTOM_OP, read_model_info

from .check import check_model

say = sayer("compile")

COMPILER = "edgetpu_compiler"
MAPPED = "Mapped to Edge TPU"
HOW_TO_GET = ("edgetpu_compiler runs on x86-64 Debian/Ubuntu: add Coral's apt repository "
              "(https://coral.ai/docs/edgetpu/compiler/) and 'sudo apt-get install edgetpu-compiler'")


@dataclass
class OpLine:
    op: str
    count: int
    status: str

    @property
    def mapped(self) -> bool:
        return self.status == MAPPED


@dataclass
class CompilerLog:
    version: str = ""
    input: str = ""
    output: str = ""
    ops: list[OpLine] = field(default_factory=list)
    memory: dict = field(default_factory=dict)  # from stdout: on_chip_used, on_chip_remaining, off_chip_used
    subgraphs: int | None = None

    @property
    def mapped_ops(self) -> int:
        return sum(o.count for o in self.ops if o.mapped)

    @property
    def cpu_ops(self) -> int:
        return sum(o.count for o in self.ops if not o.mapped)

    def to_dict(self) -> dict:
        return {"version": self.version, "input": self.input, "output": self.output,
                "mapped_ops": self.mapped_ops, "cpu_ops": self.cpu_ops, "subgraphs": self.subgraphs,
                "memory": self.memory, "ops": [asdict(o) for o in self.ops]}


_OP_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\S.*?)\s*$")
_MEMORY = {"On-chip memory used for caching model parameters": "on_chip_used",
           "On-chip memory remaining for caching model parameters": "on_chip_remaining",
           "Off-chip memory used for streaming uncached model parameters": "off_chip_used"}


def parse_compiler_log(text: str, stdout: str = "") -> CompilerLog:
    """Parse an operation log (and optionally the compiler's stdout). Raises ValueError if it is not one."""
    log = CompilerLog()
    in_table = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Edge TPU Compiler version"):
            log.version = s.split("version", 1)[1].strip()
        elif s.startswith("Input:"):
            log.input = s.split(":", 1)[1].strip()
        elif s.startswith("Output:"):
            log.output = s.split(":", 1)[1].strip()
        elif s.startswith("Operator") and "Status" in s:
            in_table = True
        elif in_table and s:
            m = _OP_ROW.match(s)
            if m:
                log.ops.append(OpLine(m.group(1), int(m.group(2)), m.group(3)))
    for line in (stdout or text).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in _MEMORY:
            log.memory[_MEMORY[key.strip()]] = value.strip()
        elif key.strip() == "Number of Edge TPU subgraphs":
            log.subgraphs = int(value.strip())
        elif key.strip().startswith("Edge TPU Compiler version") and not log.version:
            log.version = key.split("version", 1)[1].strip()
    if not log.version or not log.ops:
        raise ValueError("not an edgetpu_compiler operation log (no version line or operator table)")
    return log


def find_compiler(named: str | None) -> str | None:
    if named:
        path = shutil.which(named) or (named if Path(named).is_file() else None)
        if path is None:
            raise InputError(f"--compiler {named}: not found or not executable")
        return path
    return shutil.which(COMPILER)


@dataclass
class CompileSource:
    cpu_model: Path
    labels: Path
    manifest: dict  # the source bundle's manifest, or a new one for a plain model
    extra_files: list[Path] = field(default_factory=list)  # a bundle's other files: more labels, self-test clip


def _source(model: Path, labels: Path | None) -> CompileSource:
    src = resolve_model(model, labels)
    if src.bundle is not None:
        manifest = {k: v for k, v in src.bundle.manifest.items() if k not in ("files", "schema")}
        manifest["models"] = {"cpu": src.models.cpu.name}
        skip = {src.models.cpu.name, src.labels.name, src.bundle.manifest["models"].get("edgetpu")}
        extra = [src.bundle.path / n for n in bundle_files(src.bundle.manifest) if n not in skip]
        return CompileSource(src.models.cpu, src.labels, manifest, extra)
    info = read_model_info(model)
    if info.is_edgetpu:
        raise ModelError(f"{model}: already compiled for the Edge TPU; give its CPU model")
    kind = input_kind_of(info.inputs[0], FrontEndParams(), model)
    manifest = {"name": model.stem, "input_kind": kind, "frontend": FrontEndParams().to_dict(),
                "models": {"cpu": model.name}, "source": {"model": model.name}}
    return CompileSource(model, src.labels, manifest)


def compile_bundle(model: Path, out: Path, compiler: str | None = None, require_edgetpu: bool = False,
                   labels: Path | None = None, timeout_s: float = 600) -> tuple[int, dict]:
    """Returns (exit status, manifest). Status 2 only when the Edge TPU model was required and not made."""
    src = _source(model, labels)
    exe = find_compiler(compiler)
    if exe is None and require_edgetpu:
        raise InputError(f"{COMPILER} is not on PATH and --require-edgetpu was given; {HOW_TO_GET}")
    out.mkdir(parents=True, exist_ok=True)
    cpu = out / src.cpu_model.name
    if cpu.resolve() != src.cpu_model.resolve():
        shutil.copyfile(src.cpu_model, cpu)
    for extra in [src.labels, *src.extra_files]:
        if (out / extra.name).resolve() != extra.resolve():
            shutil.copyfile(extra, out / extra.name)
    report = check_model(cpu)
    (out / "check.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    manifest = dict(src.manifest, labels=src.labels.name)
    manifest["check"] = {"predicted_tpu_ops": len(report.predicted_tpu_ops),
                         "predicted_cpu_ops": len(report.predicted_cpu_ops),
                         "parameter_bytes": report.parameter_bytes}
    status = 0
    if exe is None:
        say(f"{COMPILER} not found, so the bundle has the CPU model only; {HOW_TO_GET}")
        manifest["compiler"] = None
    else:
        manifest["compiler"] = _run_compiler(exe, cpu, out, timeout_s)
        manifest["models"] = dict(manifest["models"], edgetpu=manifest["compiler"]["model"])
    write_manifest(out, manifest)
    return status, json.loads((out / "manifest.json").read_text())


def _run_compiler(exe: str, cpu: Path, out: Path, timeout_s: float) -> dict:
    say(f"running {exe} on {cpu.name} (this can take a minute)")
    try:
        proc = subprocess.run([exe, "-s", "-o", str(out), str(cpu)], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ModelError(f"{exe} did not finish within {timeout_s:.0f} s") from None
    except OSError as exc:
        raise InputError(f"{exe}: cannot run it ({exc.strerror})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise ModelError(f"{exe} failed with status {proc.returncode}: {last}")
    compiled = out / f"{cpu.stem}_edgetpu.tflite"
    log_file = out / f"{cpu.stem}_edgetpu.log"
    if not compiled.is_file():
        raise ModelError(f"{exe} reported success but wrote no {compiled.name}")
    try:
        log = parse_compiler_log(log_file.read_text() if log_file.is_file() else proc.stdout, proc.stdout)
    except ValueError as exc:
        raise ModelError(f"{log_file}: {exc}") from None
    info = read_model_info(compiled)
    if EDGETPU_CUSTOM_OP not in info.operator_codes:
        raise ModelError(f"{compiled}: the compiler's output holds no {EDGETPU_CUSTOM_OP} (nothing was mapped); "
                         f"see {log_file.name}")
    say(f"{compiled.name}: {log.mapped_ops} ops mapped to the Edge TPU, {log.cpu_ops} on the CPU"
        + (f", on-chip memory {log.memory['on_chip_used']}" if "on_chip_used" in log.memory else ""))
    return dict(log.to_dict(), model=compiled.name, log=log_file.name if log_file.is_file() else None)


def add_parser(sub) -> None:
    p = add_command(sub, "compile", "compile a model or bundle for the Edge TPU (keeps the CPU model as fallback)",
                    "Run edgetpu_compiler (x86-64 Linux), parse its operation log, check the output holds the Edge "
                    "TPU op and write a bundle recording the compiler version, mapped/CPU op counts and on-chip "
                    "memory. The CPU model always stays in the bundle. Without the compiler: the CPU bundle and the "
                    "static report are written and the exit status is 0 (2 with --require-edgetpu).",
                    ["python -m tools compile out/yamnet-int8 --out out/yamnet-int8-tpu",
                     "python -m tools compile model.tflite --labels labels.csv --out out/tpu --compiler "
                     "/opt/edgetpu_compiler"])
    p.add_argument("model", metavar="MODEL|BUNDLE")
    p.add_argument("--out", metavar="DIR", required=True, help="bundle folder to write")
    p.add_argument("--compiler", metavar="PATH", help="the compiler executable (default: edgetpu_compiler on PATH)")
    p.add_argument("--require-edgetpu", action="store_true", help="exit 2 if no Edge TPU model can be made")
    p.add_argument("--labels", metavar="CSV", help="class map for a plain .tflite (default: one beside it)")
    p.add_argument("--json", action="store_true", help="print the manifest")
    p.set_defaults(func=cmd_compile)


def cmd_compile(args) -> int:
    status, manifest = compile_bundle(Path(args.model), Path(args.out), args.compiler, args.require_edgetpu,
                                      Path(args.labels) if args.labels else None)
    print(json.dumps(manifest, indent=2) if args.json else args.out)
    return status
