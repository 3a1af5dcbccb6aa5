"""The house rules, checked on the source: imports point one way (core <- config <- adapters <- app), edge never
imports the host tools, no module reaches for another's private names, no import circle anywhere in edge/ or
tools/, no file outgrows 400 lines and no function 80."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "edge"
ADAPTERS = ("audio", "model", "sinks", "bench")
MAX_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules(root: Path = ROOT, packages: tuple[str, ...] = ("edge",)) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `packages` under `root` (a package is its __init__)."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
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
# and CPython's own SHA-256 under both its names (3.12 renamed _sha256 to _sha2): edge.core.files.sha256
STDLIB = set(sys.stdlib_module_names) | {"_sha2", "_sha256"}


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


CONFIG = ("edge.config", "edge.sourceconfig", "edge.settings")  # the configuration: the tree, its sources, its reader


def test_config_builds_on_the_core_only():
    def rule(name, module, names):
        if name not in CONFIG or not module.startswith("edge"):
            return None
        return None if module.startswith("edge.core") or module in CONFIG else f"config imports {module}"
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


def _import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {module it imports: line}, over every import in the file (inside functions too). `from pkg import
    name` points at pkg.name when that is a module, else at pkg; a name outside `modules` at its nearest package
    in them. An import of a module's own parent package is no edge: the package is loaded first anyway."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for module, names, line in _imports(name, path):
            for target in [f"{module}.{n}" for n in names if f"{module}.{n}" in modules] or [module]:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    edges.setdefault(target, line)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """A circle for each group of modules that reach each other through imports (a strongly connected component
    of more than one module, found with Tarjan's algorithm): the shortest way from its first module back to it."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in graph[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = {stack.pop()}
            while v not in group:
                group.add(stack.pop())
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return [_circle(graph, group) for group in groups]


def _circle(graph: dict[str, dict[str, int]], group: set[str]) -> list[str]:
    """The shortest path from the group's first module (by name) back to itself, breadth first."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return path[::-1] + [start]
                if w in group and w not in came_from:
                    came_from[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not a circle")


def _describe(circle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path], root: Path) -> str:
    """edge.a -> edge.b (edge/a.py:3) -> edge.a (edge/b.py:9)"""
    return circle[0] + "".join(f" -> {b} ({modules[a].relative_to(root)}:{graph[a][b]})"
                               for a, b in zip(circle, circle[1:]))


def _import_circles(root: Path, packages: tuple[str, ...]) -> list[str]:
    modules = _modules(root, packages)
    graph = _import_graph(modules)
    return [_describe(c, graph, modules, root) for c in _cycles(graph)]


def test_no_import_circles_in_edge_or_tools_counting_imports_inside_functions():
    assert _import_circles(ROOT, ("edge", "tools")) == []


def test_the_circle_finder_finds_a_planted_circle(tmp_path):
    """a imports b at the top, b imports a inside a function: one circle. A package importing its submodule,
    which imports a name from the package, is none (that edge from a submodule to its parent does not count)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .c import VALUE\n")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("import os\n\n\ndef late():\n    from pkg.a import thing\n    return thing\n")
    (pkg / "c.py").write_text("from . import __doc__ as VALUE\n")
    assert _import_circles(tmp_path, ("pkg",)) == ["pkg.a -> pkg.b (pkg/a.py:1) -> pkg.a (pkg/b.py:5)"]


def _long_functions(folder: Path) -> list[str]:
    long = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} ({length} lines)")
    return long


@pytest.mark.parametrize("folder", ["edge", "tools", "tests"])
def test_no_function_over_80_lines(folder):
    assert _long_functions(ROOT / folder) == [], "split these into named phases"


def test_run_starts_only_through_the_steps_selftest_runs():
    """`run` builds its daemon with startup.build(), which runs STEPS; selftest runs the same STEPS. A start-up
    step is one Startup method named in STEPS: a method that is not a step, or a step that is not a method, fails
    here (a later start-up step cannot skip the release's selftest)."""
    from edge.app import startup
    steps = {name[1:] for name in vars(startup.Startup) if name.startswith("_") and not name.startswith("__")}
    assert steps == set(startup.STEPS)
    run_src = (ROOT / "edge" / "app" / "run.py").read_text()
    assert "from .startup import build" in run_src and "daemon = build(cfg)" in run_src
    selftest_src = (ROOT / "edge" / "app" / "selftest.py").read_text()
    assert "from .startup import STEPS, Startup" in selftest_src and "for step in STEPS:" in selftest_src
    imports = {p.name: re.findall(r"from \.startup import ([\w, ]+)", p.read_text())
               for p in (ROOT / "edge").rglob("*.py")}
    builders = [name for name, found in imports.items()
                if any(re.search(r"\b(build|STEPS|Startup)\b", f) for f in found)]
    assert sorted(builders) == ["run.py", "selftest.py"]
    # doctor opens each source the way the audio step checks it, and takes nothing else from the start-up
    assert {name: found for name, found in imports.items() if found and name not in builders} == \
        {"doctor.py": ["check_source"]}
