"""The fleet's hosts as the playbook will see them, checked before anything is built or uploaded.

Each host's edge_audio_* variables are read through Ansible itself (`ansible GROUP -m debug`, which runs on this
machine and connects to no host), so group_vars, host_vars and templates resolve exactly as in the rollout. A host's
own value wins over the command line's (which the playbook gets as edge_audio_default_*); where one does, a line
says so. Each host's config is then composed here as the device will compose it (its own config file, else its
profile, else the fleet's --config, else --profile; then device id, broker and edge_audio_set) and checked as a
single deploy checks its release (tools/deploy/validate.py): a bad value names the host and stops the rollout in
one line, before anything is built or uploaded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from edge import firmware
from edge.app.release.compose import split_setting
from edge.config import listen_minutes, target_per_day
from edge.core.errors import InputError

from . import ansible_run, wheelhouse
from .validate import check_release

GROUP = "edge_audio_devices"
UNSET = "__edge_audio_unset__"
HOST_VARS = ("edge_audio_prefix", "edge_audio_python", "edge_audio_profile", "edge_audio_config",
             "edge_audio_device_id", "edge_audio_broker", "edge_audio_set", "edge_audio_extras", "edge_audio_keep",
             "edge_audio_service", "edge_audio_system_site_packages", "edge_audio_calibrate_minutes",
             "edge_audio_false_starts_per_day", "edge_audio_password_file")
SERVICES = ("auto", "system", "user", "none")
BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


@dataclass(frozen=True)
class Given:
    """A command line value the playbook gets as edge_audio_default_*: the flag, its value, and whether it was
    typed (a kit default that a host overrides is not worth a line)."""
    flag: str
    value: object
    typed: bool


@dataclass
class Host:
    name: str
    own: dict  # the host's edge_audio_* variables, as Ansible resolves them
    source: str = ""  # where its config comes from: "profile NAME", "edge_audio_config PATH", "--config PATH"
    config: Path | None = None  # a config file on this machine, staged for this host
    profile: str = ""
    settings: list[str] = field(default_factory=list)
    extras: str = ""


def read_hosts(inventory: Path, log: ansible_run.Log) -> list[Host]:
    """The hosts of the group the playbook rolls out to, in the inventory's order, each with its own variables."""
    template = "{{ {" + ", ".join(f"'{n}': {n} | default('{UNSET}')" for n in (*HOST_VARS, "inventory_dir")) + "} }}"
    cmd = [ansible_run.find("ansible"), "-i", str(inventory), GROUP, "--playbook-dir", str(ansible_run.PLAYBOOK.parent),
           "-m", "ansible.builtin.debug", "-a", json.dumps({"msg": template}),
           "--forks", "1"]  # one host after another: their results come in the inventory's order
    found: dict[str, dict] = {}
    failed: list[str] = []

    def on_event(event: dict) -> None:
        if event["event"] == "ok":
            found[event["host"]] = {k: v for k, v in event["result"]["msg"].items() if v != UNSET}
        elif event["event"] in ("failed", "unreachable"):
            failed.append(f"{event['host']}: {event['result'].get('msg', 'cannot be read')}")
    code, stderr = ansible_run.run(cmd, log, on_event)
    if failed:
        raise InputError(f"--inventory {inventory}: {failed[0]}")
    if code != 0:
        raise InputError(f"--inventory {inventory}: {ansible_run.first_error(stderr)} (log: {log.path})")
    if not found:
        raise InputError(f"--inventory {inventory}: no hosts in the group {GROUP} (the playbook's hosts)")
    return [Host(name, own) for name, own in found.items()]


def plan_host(host: Host, defaults: dict[str, Given], fleet_config: Path | None) -> Host:
    """Check the host's values and decide where its config comes from (InputError naming the host)."""
    for var, value in host.own.items():
        if var in CHECKS:
            CHECKS[var](host.name, var, value)
    _choose_config(host, defaults, fleet_config)
    host.settings = _settings(host)
    host.extras = str(host.own.get("edge_audio_extras", defaults["edge_audio_extras"].value))
    return host


def check_config(host: Host, plan, bundle: Path) -> None:
    """The host's release checked as the device will check it (tools/deploy/validate.py): its config composed
    from its profile or file, the shipped bundle and its settings, read by the daemon's loader, its labels the
    model's. InputError naming the host."""
    mine = replace(plan, profile=host.profile or None, config=host.config, settings=host.settings, bundle=bundle)
    try:
        check_release(mine, lambda: None)
    except InputError as exc:
        raise InputError(f"{host.name}: {exc}") from None


def _choose_config(host: Host, defaults: dict[str, Given], fleet_config: Path | None) -> None:
    """The host's own config file, else its own profile, else the fleet's --config, else --profile."""
    own = host.own
    if "edge_audio_config" in own:
        path = Path(str(own["edge_audio_config"])).expanduser()
        if not path.is_absolute():  # written in the inventory: relative to the inventory's folder
            path = Path(str(own.get("inventory_dir") or ".")) / path
        if not path.is_file():
            raise InputError(f"{host.name}: edge_audio_config {own['edge_audio_config']}: file not found ({path})")
        host.config, host.source = path, f"edge_audio_config {own['edge_audio_config']}"
    elif "edge_audio_profile" in own:
        host.profile, host.source = str(own["edge_audio_profile"]), f"profile {own['edge_audio_profile']}"
    elif fleet_config is not None:
        host.config, host.source = fleet_config, f"--config {fleet_config}"
    elif defaults["edge_audio_profile"].value:
        host.profile = str(defaults["edge_audio_profile"].value)
        host.source = f"profile {host.profile}"
    else:
        raise InputError(f"{host.name}: no config: give --profile NAME or --config FILE (or edge_audio_profile / "
                         "edge_audio_config in the inventory)")
    if host.profile:
        try:
            firmware.profile_text(host.profile)
        except InputError as exc:
            raise InputError(f"{host.name}: {exc}") from None


def _settings(host: Host) -> list[str]:
    """What the playbook passes as --set, built the same way: device id, broker (HOST[:PORT]), edge_audio_set."""
    own, out = host.own, []
    if "edge_audio_device_id" in own:
        out.append(f"device.id={own['edge_audio_device_id']}")
    if "edge_audio_broker" in own:
        parts = str(own["edge_audio_broker"]).split(":")
        out.append(f"mqtt.host={parts[0]}")
        out += [f"mqtt.port={parts[1]}"] if len(parts) > 1 else []
    return out + [str(s) for s in own.get("edge_audio_set", [])]


def overrides(hosts: list[Host], defaults: dict[str, Given], fleet_config: Path | None) -> list[str]:
    """One line per command line value that some hosts' own variables override: the flag and who wins."""
    lines = []
    for var, given in defaults.items():
        if given.typed and var != "edge_audio_profile":
            won = [h.name for h in hosts if var in h.own and not _same(h.own[var], given.value)]
            if won:
                lines.append(f"{given.flag} {given.value}: the inventory's own {var} wins on {few(won)}")
    flag, value = ("--config", fleet_config) if fleet_config else ("--profile", defaults["edge_audio_profile"].value)
    won = [f"{h.name} ({h.source})" for h in hosts
           if h.source.startswith("edge_audio_") or (h.source.startswith("profile") and h.source != f"profile {value}")]
    if value and won:
        lines.append(f"{flag} {value}: the inventory's own profile or config wins on {few(won)}")
    return lines


def few(names: list[str], shown: int = 5) -> str:
    """Up to `shown` names, then how many more."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _same(own, given) -> bool:
    if isinstance(given, bool):
        return _boolean(own) is given
    if isinstance(given, (int, float)):
        try:
            return float(own) == float(given)
        except (TypeError, ValueError):
            return False
    return str(own) == str(given)


def _boolean(value):
    return value if isinstance(value, bool) else BOOLEANS.get(str(value).lower())


# -- each variable's check: (host, variable, value) -> raises InputError naming all three ----------------------------
def _bad(name: str, var: str, value, why: str) -> InputError:
    return InputError(f"{name}: {var} {value!r}: {why}")


def _text(name, var, value):
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
        raise _bad(name, var, value, "expected a non-empty text")


def _prefix(name, var, value):
    _text(name, var, value)
    if not str(value).startswith(("/", "~")):
        raise _bad(name, var, value, "expected an absolute path (or ~/...)")


def _settings_list(name, var, value):
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _bad(name, var, value, "expected a list of SECTION.KEY=VALUE texts")
    for item in value:
        try:
            split_setting(item)
        except InputError:
            raise _bad(name, var, item, "expected SECTION.KEY=VALUE, e.g. detector.threshold=0.6") from None


def _broker(name, var, value):
    _text(name, var, value)
    host, _, port = str(value).partition(":")
    if not host or (port and not port.isdigit()):
        raise _bad(name, var, value, "expected HOST or HOST:PORT")


def _extras(name, var, value):
    try:
        wheelhouse.parse_extras(str(value))
    except InputError as exc:
        raise _bad(name, var, value, str(exc)) from None


def _keep(name, var, value):
    if isinstance(value, bool) or not str(value).isdigit() or int(value) < 1:
        raise _bad(name, var, value, "expected a whole number, at least 1")


def _choice(name, var, value):
    if value not in SERVICES:
        raise _bad(name, var, value, f"expected one of {', '.join(SERVICES)}")


def _flag(name, var, value):
    if _boolean(value) is None:
        raise _bad(name, var, value, "expected true or false")


def _number(check):
    def checked(name, var, value):
        try:
            check(float(value))
        except (TypeError, ValueError):
            raise _bad(name, var, value, "expected a number") from None
        except InputError as exc:
            raise _bad(name, var, value, str(exc).split(": ", 1)[-1]) from None
    return checked


def _password_file(name, var, value):
    _text(name, var, value)
    path = Path(str(value))
    if not path.is_absolute() or not path.is_file():
        raise _bad(name, var, value, "expected an absolute path to a file on this machine")
    if not path.read_bytes().strip():
        raise _bad(name, var, value, "the file is empty")


CHECKS = {"edge_audio_prefix": _prefix, "edge_audio_python": _text, "edge_audio_profile": _text,
          "edge_audio_config": _text, "edge_audio_device_id": _text, "edge_audio_broker": _broker,
          "edge_audio_set": _settings_list, "edge_audio_extras": _extras, "edge_audio_keep": _keep,
          "edge_audio_service": _choice, "edge_audio_system_site_packages": _flag,
          "edge_audio_calibrate_minutes": _number(listen_minutes),
          "edge_audio_false_starts_per_day": _number(target_per_day), "edge_audio_password_file": _password_file}
