"""Ansible's events as JSON lines on stdout, one per line: what `python -m tools deploy --inventory` reads to show
one short line per host and task, name a failed host's step and reason, and keep everything in its log file.

  {"event": "play", "name": ...}                        each batch of the rollout (the canary, then each wave)
  {"event": "task", "name": ...}
  {"event": "ok" | "failed" | "skipped" | "unreachable", "host": ..., "task": ..., "action": ..., "ignored": bool,
   "result": {...}}                                     the task's result, as Ansible's own callbacks see it
  {"event": "stats", "hosts": {host: {"ok": n, "changed": n, "failures": n, "unreachable": n, ...}}}

Select it with ANSIBLE_STDOUT_CALLBACK=edge_audio_events (ANSIBLE_CALLBACK_PLUGINS=this folder, when the playbook
is not next to it; ANSIBLE_LOAD_CALLBACK_PLUGINS=1 for the ansible command)."""

from __future__ import annotations

DOCUMENTATION = """
    name: edge_audio_events
    type: stdout
    short_description: one JSON object per line for each play, task, host result and the recap
    description:
        - The events python -m tools deploy --inventory reads (see the module's docstring).
"""

import json
import sys

from ansible.plugins.callback import CallbackBase

STATS = ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored")


def _part(result, name):
    """result.host / .task / .result (Ansible 2.19) or their older private names."""
    return getattr(result, name) if hasattr(type(result), name) else getattr(result, "_" + name)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "edge_audio_events"

    def _emit(self, event: dict) -> None:
        sys.stdout.write(json.dumps(event, default=str, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def _result(self, kind: str, result, ignored: bool = False) -> None:
        data = {k: v for k, v in dict(_part(result, "result")).items()
                if not k.startswith("_ansible") and k != "invocation"}
        task = _part(result, "task")
        self._emit({"event": kind, "host": _part(result, "host").get_name(), "task": task.get_name(),
                    "action": task.action, "ignored": bool(ignored), "result": data})

    def v2_playbook_on_play_start(self, play):
        self._emit({"event": "play", "name": play.get_name()})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit({"event": "task", "name": task.get_name()})

    def v2_playbook_on_no_hosts_matched(self):
        self._emit({"event": "no_hosts"})

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("failed", result, ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_playbook_on_stats(self, stats):
        self._emit({"event": "stats", "hosts": {h: {k: stats.summarize(h).get(k, 0) for k in STATS}
                                                for h in sorted(stats.processed)}})
