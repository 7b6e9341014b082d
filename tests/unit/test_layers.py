"""The import graph of airflow_mlops/ points down only (DESIGN.md, "Layers").

Every ``import`` of the package's own modules counts, at the top of a module or inside a function, under
``TYPE_CHECKING`` or not: each is an arrow from the importing module's layer to the imported one's. Modules of
one layer may import each other; an arrow to a higher layer is an error naming both modules. Run with ``-s`` to
see the graph's arrows per pair of layers.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import airflow_mlops

PACKAGE = Path(airflow_mlops.__file__).parent

# Top to bottom. A module's layer is its first path part below airflow_mlops/ (the package or the module).
LAYERS = (
    ("entry points", {"cli", "plugins"}),
    ("factories", {"factories"}),
    ("airflow layer", {"operators", "sensors", "triggers", "links", "hooks", "notifications"}),
    ("config", {"config"}),
    ("stages", {"stages"}),
    ("beam", {"beam"}),
    ("serving", {"serving"}),
    ("ml", {"ml"}),
    ("store", {"store"}),
    ("foundation", {"dtypes", "exceptions", "get_provider_info", "__init__"}),
)
RANK = {part: rank for rank, (_, parts) in enumerate(LAYERS) for part in parts}
AIRFLOW_FREE = ("ml", "store", "serving", "config", "dtypes", "exceptions")
"""Layers that run where Airflow is not installed (the training pod, the model server, ``airflow-mlops lint``)."""


def _part(module: str) -> str:
    """``airflow_mlops.operators.base`` -> ``operators``; ``airflow_mlops`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module this file imports, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [alias.name for alias in node.names]
            if node.module == "airflow_mlops" and any(_is_module(name) for name in names):  # from airflow_mlops import config
                found += [(f"airflow_mlops.{name}" if _is_module(name) else node.module, node.lineno) for name in names]
            else:
                found.append((node.module, node.lineno))
    return found


def _graph() -> list[tuple[str, str, int, str]]:
    """(importing file, imported module, line, importing module's part) for every import of the package's own."""
    arrows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts)
        for imported, line in _imports(path):
            if imported.split(".")[0] in ("airflow_mlops", "airflow"):
                arrows.append((module, imported, line, _part(module)))
    return arrows


def test_every_module_has_a_layer():
    parts = {_part(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")}
    assert parts - set(RANK) == set(), "add these to LAYERS"


def test_imports_point_down_only():
    counts: Counter[tuple[str, str]] = Counter()
    upward = []
    for module, imported, line, part in _graph():
        if not imported.startswith("airflow_mlops"):
            continue
        source, target = RANK[part], RANK[_part(imported)]
        counts[LAYERS[source][0], LAYERS[target][0]] += 1
        if target < source:
            upward.append(f"{module}:{line} imports {imported} ({LAYERS[source][0]} -> {LAYERS[target][0]})")
    down = sum(n for (a, b), n in counts.items() if a != b)
    print(
        f"\nimport arrows between layers: {down} down, {len(upward)} up; within a layer: {sum(n for (a, b), n in counts.items() if a == b)}"
    )
    for (a, b), n in sorted(counts.items(), key=lambda kv: ([name for name, _ in LAYERS].index(kv[0][0]), -kv[1])):
        if a != b:
            print(f"  {a:>13} -> {b:<13} {n:3d}")
    assert upward == []


def test_the_airflow_layer_never_imports_the_factories():
    offending = [
        f"{module}:{line} imports {imported}"
        for module, imported, line, part in _graph()
        if part in ("operators", "sensors", "triggers", "hooks") and imported.startswith("airflow_mlops.factories")
    ]
    assert offending == []


def test_airflow_free_layers_never_import_airflow():
    offending = [
        f"{module}:{line} imports {imported}"
        for module, imported, line, part in _graph()
        if part in AIRFLOW_FREE and imported.split(".")[0] == "airflow"
    ]
    assert offending == []
