"""A release's config.toml from a board profile (or the user's file), the bundle it ships and the --set values.

The device writes it this way during `release install`; the host composes the same text before anything is
uploaded and validates it with the daemon's own config loader, so a bad value is refused on the host. Standard
library only (it runs from the wheel before a venv exists; tomllib from Python 3.11, a plainer reading before)."""

from __future__ import annotations

import json
import re

from ...core.errors import InputError

try:
    import tomllib
except ImportError:  # Python < 3.11 on the device, before the venv (and its tomli) exists
    tomllib = None

KEY = re.compile(r"([a-z_]+)\.([a-z_]+)")
# one [[sources]] table's key, by its id: sources.porch.url, sources.porch.detector.allow
SOURCE_KEY = re.compile(r"sources\.([A-Za-z0-9_-]+)\.(?:(detector|calibration)\.)?([a-z_]+)")
SET_HELP = ("SECTION.KEY=VALUE, e.g. device.id=kitchen or detector.allow='[\"Dog\", \"Cat\"]', or a source's "
            "SOURCES.ID.KEY=VALUE, e.g. sources.porch.url=rtsp://... or sources.porch.detector.allow='[\"Dog\"]' (a "
            "[[sources]] table the config has; --set adds none)")
NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


def toml_value(text: str) -> str:
    """A --set value as a TOML literal. TOML values are taken as written: numbers, true/false, "strings", lists
    (["Dog", "Cat"]) and inline tables; anything else is a string (kitchen, 007, $(reboot))."""
    text = text.strip()
    parsed = parse_value(text)
    if parsed is not _NOT_TOML:
        return text
    return json.dumps(text)  # a TOML basic string: the same escapes as JSON


_NOT_TOML = object()


def parse_value(text: str):
    """`text` read as one TOML value, or _NOT_TOML (then it is a plain string)."""
    if tomllib is not None:
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except (tomllib.TOMLDecodeError, KeyError):
            return _NOT_TOML
    if NUMBER.fullmatch(text):
        return float(text) if "." in text else int(text)
    if text in ("true", "false"):
        return text == "true"
    if text[:1] in ('"', "[", "{"):
        try:
            return json.loads(text)  # the common forms; the selftest in the venv reads the file with tomli
        except ValueError:
            return _NOT_TOML
    return _NOT_TOML


def setting_value(text: str):
    """The value a --set asks for, as the config loader will see it."""
    parsed = parse_value(text.strip())
    return text.strip() if parsed is _NOT_TOML else parsed


def split_setting(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not (KEY.fullmatch(key.strip()) or SOURCE_KEY.fullmatch(key.strip())):
        raise InputError(f"--set {shown_setting(item)}: expected {SET_HELP}")
    return key.strip(), value.strip()


def shown_setting(item: str) -> str:
    """A --set as an error line may show it: a URL's credentials blanked."""
    from ...core.names import redacted
    key, sep, value = item.partition("=")
    return key + sep + (redacted(value) if "://" in value else value)


def set_key(text: str, dotted: str, literal: str) -> str:
    """Set `section.key = literal` in TOML text written as [section] tables (the board profiles' style), or
    `sources.ID.key` / `sources.ID.detector.key` in the [[sources]] table whose id is ID."""
    source = SOURCE_KEY.fullmatch(dotted)
    if source:
        return set_source_key(text, dotted, *source.groups(), literal)
    m = KEY.fullmatch(dotted)
    if not m:
        raise InputError(f"--set {dotted}: expected {SET_HELP}")
    section, key = m.groups()
    lines = text.splitlines()
    header = re.compile(rf"\s*\[\s*{section}\s*\]\s*(#.*)?$")
    start = next((i for i, l in enumerate(lines) if header.fullmatch(l)), None)
    line = f"{key} = {literal}"
    if start is None:
        return "\n".join(lines + ["", f"[{section}]", line]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\s*\[", lines[i])), len(lines))
    for i in range(start + 1, end):
        if re.match(rf"\s*{key}\s*=", lines[i]):
            lines[i] = line
            return "\n".join(lines) + "\n"
    last = max((i for i in range(start, end) if lines[i].strip()), default=start)
    lines.insert(last + 1, line)
    return "\n".join(lines) + "\n"


HEADER = re.compile(r"\s*\[")
SOURCES_HEADER = re.compile(r"\s*\[\[\s*sources\s*\]\]\s*(#.*)?$")


def set_source_key(text: str, dotted: str, source_id: str, table: str | None, key: str, literal: str) -> str:
    """`key = literal` in the [[sources]] table with `id = "source_id"` (in its [sources.<table>] when `table`).
    InputError when the config has no such source, or writes that part in a form this does not edit."""
    if key == "id" and table is None:
        raise InputError(f"--set {dotted}: a source's id is not set with --set (its topics and files go by it): edit "
                         "the config file")
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if SOURCES_HEADER.fullmatch(line)]
    block = None
    for start in starts:
        end = next((i for i in range(start + 1, len(lines)) if HEADER.match(lines[i]) and
                    not re.match(r"\s*\[\s*sources\.", lines[i])), len(lines))
        own = next((i for i in range(start + 1, end) if HEADER.match(lines[i])), end)  # its own keys end here
        if any(re.fullmatch(rf"""\s*id\s*=\s*["']{re.escape(source_id)}["']\s*(#.*)?""", lines[i])
               for i in range(start + 1, own)):
            block = (start, own, end)
            break
    if block is None:
        raise InputError(f"--set {dotted}: the config has no [[sources]] table with id = \"{source_id}\" (--set adds "
                         "no source: write it in the config file)")
    start, own, end = block
    if table is not None:
        if any(re.match(rf"\s*{table}\s*=", lines[i]) for i in range(start + 1, own)):
            raise InputError(f"--set {dotted}: that source's {table} is an inline table in the config: edit the "
                             "config file")
        head = re.compile(rf"\s*\[\s*sources\.{table}\s*\]\s*(#.*)?$")
        sub = next((i for i in range(own, end) if head.fullmatch(lines[i])), None)
        if sub is None:
            last = max((i for i in range(start, end) if lines[i].strip() and not lines[i].lstrip().startswith("#")),
                       default=start)
            lines[last + 1:last + 1] = [f"[sources.{table}]", f"{key} = {literal}"]
            return "\n".join(lines) + "\n"
        start, own = sub, next((i for i in range(sub + 1, end) if HEADER.match(lines[i])), end)
    for i in range(start + 1, own):
        if re.match(rf"\s*{key}\s*=", lines[i]):
            lines[i] = f"{key} = {literal}"
            return "\n".join(lines) + "\n"
    last = max((i for i in range(start, own) if lines[i].strip() and not lines[i].lstrip().startswith("#")),
               default=start)
    lines.insert(last + 1, f"{key} = {literal}")
    return "\n".join(lines) + "\n"


def compose_config(text: str, bundle_dir: str | None, settings: list[str]) -> str:
    """The release's config: `text` (a profile's or the user's), model.path at the shipped bundle, each --set."""
    if bundle_dir:
        text = set_key(text, "model.path", json.dumps(bundle_dir))
    for item in settings:
        key, value = split_setting(item)
        text = set_key(text, key, toml_value(value))
    return text


def values_match(actual, wanted: str) -> bool:
    """Does the loaded config hold what --set asked for? (5 and 5.0 are the same number.)"""
    value = setting_value(wanted)
    if isinstance(actual, bool) or isinstance(value, bool):
        return str(actual).lower() == str(value).lower()
    if isinstance(actual, (int, float)):
        try:
            return float(value) == float(actual)
        except (TypeError, ValueError):
            return False
    if isinstance(actual, (list, tuple)):
        return isinstance(value, list) and list(actual) == value
    return str(actual) == str(value)
