"""Reading typed settings from TOML: bounded reading of the text, and one checked dataclass per table.

Every field is made by edge.core.params.param() (type from its default, bounds, choices, a description); a table
becomes the dataclass, or ConfigError names the file and the key (exit 78: systemd does not restart on it).
"""

from __future__ import annotations

import re
from dataclasses import fields

from .core.errors import ConfigError
from .core.files import KIB
from .core.names import shown
from .core.params import default_of

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

MAX_TOML_DEPTH = 32  # arrays and inline tables inside each other: a config needs 3 ([[sources]] with a table)
MAX_TOML_LINE = 64 * KIB
TOML_TOKENS = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]')
KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
         dict: "a table"}


def read_toml(text: str, path: str, max_depth: int | None = None) -> dict:
    """TOML text as a dict, or ConfigError (one line). Lines and nesting are bounded first, with a cheap scan
    (brackets and braces outside strings and comments): the reader recurses once per nesting level."""
    limit = MAX_TOML_DEPTH if max_depth is None else max_depth
    if text and max(map(len, text.splitlines())) > MAX_TOML_LINE:
        number = next(i for i, line in enumerate(text.splitlines(), 1) if len(line) > MAX_TOML_LINE)
        raise ConfigError(f"{path}: line {number} is longer than {MAX_TOML_LINE // KIB} KiB")
    depth = 0
    for token in TOML_TOKENS.finditer(text):
        depth = max(0, depth + {"[": 1, "{": 1, "]": -1, "}": -1}.get(token.group(), 0))
        if depth > limit:
            line = text.count("\n", 0, token.start()) + 1
            raise ConfigError(f"{path}: arrays and tables nested more than {limit} deep (line {line})")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None


def check_value(value, f, where: str):
    """`value` for the param() field `f`, or ConfigError naming `where` (file: key)."""
    kind = type(default_of(f))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {KINDS[kind]} (got {value!r})")
    if kind is str and "\0" in value:
        raise ConfigError(f"{where} {shown(value)} contains a NUL character")
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where} must be one of {', '.join(map(repr, meta['choices']))} (got {value!r})")
    if meta.get("lo") is not None and not meta["lo"] <= value <= meta["hi"]:
        raise ConfigError(f"{where} must be between {meta['lo']} and {meta['hi']} (got {value!r})")
    return value


def section(cls, table, name: str, path: str, moved: dict | None = None):
    """The dataclass `cls` from one TOML table named `name` (in messages), every key checked."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if moved and f"{name}.{key}" in moved:
            raise ConfigError(f"{path}: {moved[f'{name}.{key}']}")
        if key not in known:
            raise ConfigError(f"{path}: unknown key '{name}.{key}' (known: {', '.join(known)})")
    values = {k: check_value(v, known[k], f"{path}: {name}.{k}") for k, v in table.items()}
    return cls(**values)
