"""Parameter fields with their documentation and bounds, shared by the core's parameter classes and the daemon's
configuration tree: a default is written once, where the parameter lives, and read from there by the config
file, `--show-keys` and the command line."""

from __future__ import annotations

from dataclasses import MISSING, Field, field


def param(default, doc: str, lo=None, hi=None, choices=None):
    """A dataclass field carrying its description, bounds (lo..hi) and allowed values."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f: Field):
    """The default value of a field made by param()."""
    return f.default if f.default is not MISSING else f.default_factory()
