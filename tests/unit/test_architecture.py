"""The house rules, checked on the source: imports point one way (core <- config <- adapters <- app), edge never
imports the host tools, no module reaches for another's private names, and no file outgrows 400 lines."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "edge"
ADAPTERS = ("audio", "model", "sinks", "bench")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(EDGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [a.name for a in node.names], node.lineno))
    return found


MODULES = _modules()
STDLIB = set(sys.stdlib_module_names)


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "edge":
        return "external"
    if len(parts) == 1:
        return "package"
    return parts[1] if parts[1] in ("core", "app", *ADAPTERS) else parts[1]  # 'config' for edge.config


def _violations(rule) -> list[str]:
    bad = []
    for name, path in MODULES.items():
        for module, names, line in _imports(name, path):
            problem = rule(name, module, names)
            if problem:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {problem}")
    return bad


def test_the_core_imports_only_numpy_the_standard_library_and_itself():
    def rule(name, module, names):
        if _layer(name) != "core":
            return None
        top = module.split(".")[0]
        if top in STDLIB or top == "numpy" or module == "__future__" or module.startswith("edge.core"):
            return None
        return f"core imports {module}"
    assert _violations(rule) == []


def test_config_builds_on_the_core_only():
    def rule(name, module, names):
        if name != "edge.config" or not module.startswith("edge"):
            return None
        return None if module.startswith("edge.core") else f"config imports {module}"
    assert _violations(rule) == []


def test_adapters_never_import_the_applications():
    def rule(name, module, names):
        if _layer(name) in ADAPTERS and module.startswith("edge.app"):
            return f"adapter {name} imports {module}"
        return None
    assert _violations(rule) == []


def test_nothing_below_the_applications_imports_them_and_edge_never_imports_tools():
    def rule(name, module, names):
        if module.split(".")[0] == "tools":
            return f"{name} imports the host tools ({module})"
        if _layer(name) not in ("app", "__main__") and module.startswith("edge.app"):
            return f"{name} imports the application layer ({module})"
        return None
    assert _violations(rule) == []


def test_no_module_imports_another_modules_private_names():
    def rule(name, module, names):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        return f"{name} imports {', '.join(private)} from {module}" if private else None
    bad = _violations(rule)
    for path in sorted((ROOT / "tools").rglob("*.py")):  # the host tools use edge's public names only
        for module, names, line in _imports("tools." + path.stem, path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if module.startswith("edge") and private:
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {', '.join(private)} from {module}")
    assert bad == []


@pytest.mark.parametrize("folder", ["edge", "tools", "tests"])
def test_no_file_over_400_lines(folder):
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / folder).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these files: {long}"


def test_the_rules_see_a_violation_when_there_is_one(tmp_path):
    """The checker itself: a core module importing an adapter and a private name is reported."""
    bad = tmp_path / "stream.py"
    bad.write_text("from ..model.bundle import _secret\nimport paho\n")
    found = _imports("edge.core.stream", bad)
    assert ("edge.model.bundle", ["_secret"], 1) in found and ("paho", [], 2) in found
