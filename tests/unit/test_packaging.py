"""The wheel holds every package of the device runtime: pyproject.toml lists them (a package search would walk
out/, where the arm-check keeps an emulated root with /proc mounted), so a new folder must be added there."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_under_edge_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edge").rglob("__init__.py")}
    assert found == listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}; gone: {sorted(listed - found)}"
