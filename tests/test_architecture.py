"""The import graph of ``src/chiploop``: no cycle between files, and no import that runs up the layers

    schema < devices < emulator < learning < experiments

The files are parsed with :mod:`ast`, never imported, so every ``import`` counts: module-level,
inside a function (lazy), under ``if TYPE_CHECKING``, and relative. A lazy import hides a
dependency from import time, not from the design. ``from chiploop.a import b`` is an edge to
``chiploop/a/b.py`` when that is a module, else to ``chiploop/a/__init__.py`` (or ``chiploop/a.py``);
the parent packages Python runs on the way (``chiploop/__init__.py``, ``chiploop/a/__init__.py``)
are not edges.

A new top-level module or package gets its layer in :data:`LAYERS`; a file no entry covers fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "chiploop"

LAYER_ORDER = ("schema", "devices", "emulator", "learning", "experiments", "api")  # lowest first

# a file (exact path) or a folder (everything under it) -> its layer; the most specific entry wins
LAYERS = {
    "chiploop/__init__.py": "schema",
    "chiploop/specs.py": "schema",
    "chiploop/lazy.py": "schema",
    "chiploop/devices": "devices",
    "chiploop/emulator": "emulator",
    "chiploop/remote": "emulator",       # the chip served over gRPC: crossbars behind the verbs, on a wire
    "chiploop/learning": "learning",
    "chiploop/experiments": "experiments",
    "chiploop/api.py": "api",
}


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` (both paths relative to the source root) at ``line``."""

    source: str
    target: str
    line: int


def module_files(root: Path) -> dict[str, str]:
    """Dotted module name -> path relative to ``root`` of every .py file of the package."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        rel = path.relative_to(root)
        parts = rel.with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = rel.as_posix()
    return out


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute dotted base of ``from X import ...``, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def import_edges(root: Path) -> tuple[list[Edge], list[str]]:
    """Every import of a package module by a package file, and the imports naming no module."""
    modules = module_files(root)
    edges, unknown = [], []
    for module, rel in modules.items():
        tree = ast.parse((root / rel).read_text(), filename=rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if _ours(alias.name)]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, module, rel.endswith("__init__.py"))
                if not _ours(base):
                    continue
                # `from a import b`: the submodule a.b when there is one, else a itself
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                if target in modules:
                    edges.append(Edge(rel, modules[target], node.lineno))
                else:
                    unknown.append(f"{rel}:{node.lineno} imports {target}, which is no module of the package")
    return edges, unknown


def layer_of(rel: str) -> str | None:
    """The layer of a file from :data:`LAYERS` (exact path, else the longest folder that holds it)."""
    if rel in LAYERS:
        return LAYERS[rel]
    folders = [key for key in LAYERS if rel.startswith(key.rstrip("/") + "/")]
    return LAYERS[max(folders, key=len)] if folders else None


def unplaced(root: Path) -> list[str]:
    """Files no entry of :data:`LAYERS` covers."""
    return [rel for rel in module_files(root).values() if layer_of(rel) is None]


def upward(edges: list[Edge]) -> list[str]:
    """Imports of a higher layer than the importer's own."""
    out = []
    for e in edges:
        low, high = layer_of(e.source), layer_of(e.target)
        if low is not None and high is not None and LAYER_ORDER.index(high) > LAYER_ORDER.index(low):
            out.append(f"{e.source}:{e.line} ({low}) imports {e.target} ({high})")
    return out


def cycles(edges: list[Edge]) -> list[str]:
    """One path per import cycle found by depth-first search: ``a.py:3 -> b.py:7 -> a.py`` says that
    line 3 of a.py imports b.py and line 7 of b.py imports a.py."""
    graph: dict[str, list[Edge]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e)
    found, seen, done = [], set(), set()
    stack: list[Edge] = []
    on_stack: list[str] = []

    def visit(node: str) -> None:
        on_stack.append(node)
        for e in sorted(graph.get(node, []), key=lambda e: (e.target, e.line)):
            if e.target in on_stack:
                loop = stack[on_stack.index(e.target):] + [e]
                key = frozenset(x.source for x in loop)
                if key not in seen:
                    seen.add(key)
                    found.append(" -> ".join(f"{x.source}:{x.line}" for x in loop) + f" -> {e.target}")
            elif e.target not in done:
                stack.append(e)
                visit(e.target)
                stack.pop()
        on_stack.pop()
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node)
    return found


def problems(root: Path) -> list[str]:
    """Everything wrong with the package's imports under ``root``, one line each."""
    edges, unknown = import_edges(root)
    return ([f"{rel}: no layer; give its top-level module or package one in LAYERS "
             f"(tests/test_architecture.py)" for rel in unplaced(root)]
            + unknown
            + [f"import cycle: {c}" for c in cycles(edges)]
            + [f"upward import: {u}" for u in upward(edges)])


def test_every_file_has_a_layer():
    assert not unplaced(SRC), "\n".join(unplaced(SRC))


def test_no_import_cycles():
    found = cycles(import_edges(SRC)[0])
    assert not found, "import cycles between files:\n" + "\n".join(found)


def test_imports_only_run_down_the_layers():
    found = upward(import_edges(SRC)[0])
    assert not found, f"imports up the layers {' < '.join(LAYER_ORDER)}:\n" + "\n".join(found)


def test_every_import_names_a_module():
    unknown = import_edges(SRC)[1]
    assert not unknown, "\n".join(unknown)


def test_the_package_root_imports_nothing_heavy():
    code = "import sys, chiploop; print(sorted({'torch', 'aihwkit', 'yaml'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------ the checker on a synthetic tree

def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "chiploop/__init__.py": "",
    "chiploop/specs.py": "import yaml\n",
    "chiploop/devices/__init__.py": "from chiploop.devices.spec import Spec\n",
    "chiploop/devices/spec.py": "from chiploop.specs import check\n",
    "chiploop/emulator/__init__.py": "",
    "chiploop/emulator/chip.py": "from chiploop.devices import Spec\nfrom . import ideal\n",
    "chiploop/emulator/ideal.py": "def f():\n    from ..devices.spec import Spec\n",
    "chiploop/learning/__init__.py": "",
    "chiploop/experiments/__init__.py": "",
}


def test_checker_passes_a_clean_tree_and_resolves_every_import_form(tmp_path):
    root = _tree(tmp_path, CLEAN)
    assert problems(root) == []
    edges = {(e.source, e.target) for e in import_edges(root)[0]}
    assert edges == {
        ("chiploop/devices/__init__.py", "chiploop/devices/spec.py"),
        ("chiploop/devices/spec.py", "chiploop/specs.py"),
        ("chiploop/emulator/chip.py", "chiploop/devices/__init__.py"),   # a name, not a module: the package
        ("chiploop/emulator/chip.py", "chiploop/emulator/ideal.py"),     # relative, a submodule
        ("chiploop/emulator/ideal.py", "chiploop/devices/spec.py"),      # lazy and relative
    }  # no edge to the parent packages' __init__.py that Python runs on the way


def test_checker_finds_a_cycle_through_a_lazy_import(tmp_path):
    root = _tree(tmp_path, {**CLEAN, "chiploop/devices/spec.py": "def f():\n    import chiploop.devices.other\n",
                            "chiploop/devices/other.py": "from chiploop.devices.spec import DeviceSpec\n"})
    assert problems(root) == ["import cycle: chiploop/devices/spec.py:2 -> chiploop/devices/other.py:1 "
                              "-> chiploop/devices/spec.py"]


def test_checker_finds_an_upward_import_and_an_unplaced_file(tmp_path):
    root = _tree(tmp_path, {**CLEAN, "chiploop/devices/spec.py": "from chiploop.emulator import chip\n",
                            "chiploop/newcomer.py": "from chiploop import specs\n"})
    found = problems(root)
    assert "chiploop/newcomer.py: no layer" in found[0]
    assert ("upward import: chiploop/devices/spec.py:1 (devices) imports chiploop/emulator/chip.py (emulator)"
            in found)
    assert any(p.startswith("import cycle: ") for p in found)  # chip -> devices -> spec -> chip
