"""What the screen shows of a fleet rollout, made from Ansible's events (tools/deploy/ansible_run.py): one short line
per host and step while it runs ("canary dev1: install: installed R (was P) in 21.4 s"), and for a host that failed,
one line with its step and the reason, taken from the device's own error line when it wrote one, and what became of
its release ("switched back to P" or "P stays current" as the device said it, else that nothing was switched).

A step is the part of a playbook task's name before its colon ("Install: selftest, switch, ..." is "install")."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from edge.app.command import sayer

say = sayer("deploy")
DEVICE_ERROR = re.compile(r"edge-audio[a-z -]*: error: (.+)")  # edge-audio: error: ..., edge-audio release: ...
NOT_FOUND = re.compile(r"(\S+): (?:\d+: )?(?:not found|No such file or directory)")
ERRNO = re.compile(r"No such file or directory: b?'([^']+)'")
WRAPPERS = ("Task failed: ", "Failed to connect to the host via ssh: ")  # Ansible's words around the reason
QUIET = ("cleanup", "result", "calibration")  # tidying up, and the results the playbook shows on its own


def step_of(task: str) -> str:
    head, sep, _ = task.partition(":")
    return (head if sep else task).strip().lower()


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    for wrapper in WRAPPERS:
        text = text[len(wrapper):] if text.startswith(wrapper) else text
    return text if len(text) <= limit else text[:limit - 3] + "..."


def reason(event: dict) -> str:
    """Why a host failed, in one line: the device's own error line, a missing program, else Ansible's message."""
    r = event["result"]
    if event["event"] == "unreachable":
        return "unreachable: " + _one_line(r.get("msg", "no answer"))
    texts = [str(r.get(k) or "") for k in ("stderr", "stdout", "module_stderr", "module_stdout", "msg")]
    lines = [l.strip() for t in texts for l in t.replace("\r", "").splitlines() if l.strip()]
    device = [m.group(1) for m in map(DEVICE_ERROR.match, lines) if m]
    if device:
        return _one_line(device[-1])
    for line in lines:
        missing = ERRNO.search(line) or NOT_FOUND.search(line)
        if missing:
            module = "module_stdout" in r or "module_stderr" in r  # the module's interpreter did not start
            interpreter = " (ansible_python_interpreter, which runs Ansible's modules)" if module else ""
            return f"{missing.group(1)} not found{interpreter}"
    said = str(r.get("stderr") or "").strip().splitlines()  # a command's own last words, else Ansible's
    return _one_line((said[-1] if said else "") or r.get("msg") or (lines[-1] if lines else f"exit {r.get('rc')}"))


def aftermath(step: str, why: str) -> str:
    """What became of the host's release, when the device's own line does not say it."""
    if "switched back" in why or "stays current" in why:
        return ""
    if step == "calibrate":
        return "; the new release is installed and current, and any previous calibration stays"
    return "; nothing was switched: it keeps its release"


@dataclass
class Progress:
    """Called with each event of the rollout's ansible-playbook run; keeps what the summary needs."""
    hosts: list  # the inventory's order, which the summary keeps
    dry_run: bool = False
    batch: int = 0
    step: str = ""
    failures: dict = field(default_factory=dict)  # host -> (step, reason)
    results: dict = field(default_factory=dict)  # host -> the install step's result
    batches: dict = field(default_factory=dict)  # host -> its batch (1: the canary)
    pending: dict = field(default_factory=dict)  # host -> (step, line) not shown yet
    started: dict = field(default_factory=dict)  # (host, step) -> when it began
    t0: float = field(default_factory=time.monotonic)  # when the current task began

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind in ("play", "stats"):
            self.flush()
            self.batch += kind == "play"
        elif kind == "task":
            if step_of(event["name"]) != self.step:
                self.flush()
            self.step = step_of(event["name"])
            self.t0 = time.monotonic()
        elif kind in ("ok", "failed", "unreachable", "skipped"):
            self.host_event(event, kind)

    def label(self, host: str) -> str:
        batch = self.batches.get(host, self.batch)
        return f"{'canary' if batch == 1 else f'wave {batch - 1}'} {host}"

    def host_event(self, event: dict, kind: str) -> None:
        host, step = event["host"], step_of(event["task"])
        self.batches.setdefault(host, self.batch)
        self.started.setdefault((host, step), self.t0)
        if kind in ("failed", "unreachable") and not event.get("ignored"):
            self.pending.pop(host, None)
            if host not in self.failures:  # the first is the reason; the cleanup after it may fail the same way
                self.failures[host] = (step, reason(event))
                say(f"{self.label(host)}: {step}: FAILED after {self.seconds(host, step)} s")
            return
        if step == "current":  # the comparison before the upload says something when nothing needs uploading
            if kind == "ok" and self.unchanged(host, event["result"]):
                self.pending[host] = ("install", f"{self.results[host]['result']} {self.results[host]['release']} "
                                                 f"(nothing uploaded) in {self.seconds(host, step)} s")
            return
        if step in QUIET or (kind == "skipped" and not self.would_run(event["result"])):
            return
        line = "would run (dry run)" if kind == "skipped" else self.describe(host, step, event["result"])
        before = self.pending.get(host, ("", ""))
        if not (before[0] == step and line.startswith("ok in ") and not before[1].startswith("ok in ")):
            self.pending[host] = (step, line)  # a step's last word, unless it says less than the one before

    def unchanged(self, host: str, result: dict) -> bool:
        """The comparison found the same release current (and the result says which one)."""
        try:
            r = json.loads(str(result.get("stdout") or "").strip().splitlines()[-1])
        except (ValueError, IndexError):
            return False
        if isinstance(r, dict) and r.get("result") == "unchanged" and r.get("release"):
            self.results[host] = r
            return True
        return False

    def would_run(self, result: dict) -> bool:
        """A task skipped by a dry run (check mode), not by its own condition (a no_log task's result does not
        say: it is left out)."""
        return self.dry_run and "censored" not in result and \
            result.get("false_condition", "not ansible_check_mode") == "not ansible_check_mode"

    def seconds(self, host: str, step: str) -> float:
        return round(time.monotonic() - self.started.get((host, step), time.monotonic()), 1)

    def describe(self, host: str, step: str, result: dict) -> str:
        out = str(result.get("stdout") or "").strip().splitlines()
        if step == "check" and out:
            return out[-1].strip()
        try:
            r = json.loads(out[-1]) if step in ("install", "calibrate") and out else None
        except ValueError:
            r = None  # not the step's JSON result: the log has what it said
        if step == "install" and isinstance(r, dict):
            self.results[host] = r
            was = f" (was {r['previous'] or 'none'})" if r.get("result") == "installed" else ""
            return f"{r['result']} {r.get('release') or ''}{was} in {self.seconds(host, step)} s"
        if step == "calibrate" and isinstance(r, dict):
            labels = "; ".join(f"{label} {value:.3f}" for label, value in r["thresholds"].items())
            return f"calibrated in {self.seconds(host, step)} s: {labels} -> {r['file']}"
        return f"ok in {self.seconds(host, step)} s"

    def flush(self) -> None:
        for host, (step, line) in list(self.pending.items()):
            say(f"{self.label(host)}: {step}: {line}")
        self.pending.clear()

    # -- the end ----------------------------------------------------------------------------------------------------
    def failed(self) -> list[str]:
        return [h for h in self.hosts if h in self.failures]

    def failure_lines(self) -> list[str]:
        return [f"{host}: {self.failures[host][0]}: {self.failures[host][1]}{aftermath(*self.failures[host])}"
                for host in self.failed()]

    def stopped(self, log: str) -> str:
        """The one line that ends a stopped rollout (after one line per failed host when several failed)."""
        lines = self.failure_lines()
        done = [h for h in self.hosts if h in self.batches and h not in self.failures]
        untouched = [h for h in self.hosts if h not in self.batches]
        first = min((self.batches[h] for h in self.failures), default=0)
        where = "at the canary" if first == 1 else f"in wave {first - 1}" if first else ""
        tail = (f"; done: {', '.join(done)}" if done else "") + \
               (f"; not reached: {', '.join(untouched)} (they keep their release)" if untouched else "")
        head = lines[0] if len(lines) == 1 else f"{len(lines)} hosts failed ({', '.join(self.failed())})"
        return f"{head}; the rollout stopped {where}{tail}; Ansible's output: {log}"

    def summary(self) -> list[str]:
        rows = []
        for host in self.hosts:
            r = self.results.get(host, {})
            rows.append(f"  {host:24s} {r.get('result', 'dry run' if self.dry_run else '?'):10s} "
                        f"{r.get('release') or ''}")
        return rows
