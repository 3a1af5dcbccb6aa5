"""TOML text from plain values: what `edge-audio run --show-keys` prints and what the live rig writes as a daemon
config. The standard library reads TOML (tomllib) but does not write it; the config's values are only strings,
numbers, booleans, lists of those and tables of them, so this is all it takes."""

from __future__ import annotations

import json
import math


def value(v) -> str:
    """One value as TOML: strings double-quoted with JSON's escapes (a subset of TOML's basic strings)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return ("-" if v < 0 else "") + ("nan" if math.isnan(v) else "inf")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def key(k: str) -> str:
    """A bare key when TOML allows one, else a quoted key."""
    return k if k and all(c.isalnum() or c in "-_" for c in k) and k.isascii() else json.dumps(k)


def dumps(tables: dict[str, dict | list]) -> str:
    """Top-level tables of keys: {"audio": {"source": "wav"}, ...} -> "[audio]\\nsource = \\"wav\\"\\n..."; a list
    of tables ({"sources": [{"id": "a"}, ...]}) is an array of tables ([[sources]]), a table in one of them an
    inline table."""
    out = []
    for name, keys in tables.items():
        for one in keys if isinstance(keys, list) else [keys]:
            out.append(f"[[{key(name)}]]" if isinstance(keys, list) else f"[{key(name)}]")
            out += [f"{key(k)} = {value(v)}" for k, v in one.items()]
            out.append("")
    return "\n".join(out)
