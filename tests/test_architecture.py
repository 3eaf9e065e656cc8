"""The package's import graph: layers point one way, no cycles (lazy imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import robustloss

SRC = Path(robustloss.__file__).resolve().parent

#: bottom to top (docs/architecture.md); a module may import only from its own unit or lower layers
LAYERS: list[set[str]] = [
    {"errors"},
    {"io", "registry", "device", "distributed"},
    {"datasets", "centers"},
    {"models"},
    {"objectives"},
    {"classifier", "external"},
    {"attacks"},
    {"training", "evaluation"},   # siblings: neither imports the other
    {"runs"},
    {"reproduce"},
    {"cli"},
    {"__main__"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """robustloss modules imported anywhere in the file (``from pkg import submodule`` counts the submodule)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("robustloss")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("robustloss"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _without_facades(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without package ``__init__`` re-exports pointing into their own package."""
    out = {}
    for name, deps in graph.items():
        is_package = (SRC.parent / Path(*name.split(".")) / "__init__.py").is_file()
        out[name] = {d for d in deps if not (is_package and d.startswith(name + "."))}
    return out


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m in _graph()} - {"__init__"}
    assert units <= set(LAYER), f"modules without a layer in docs/architecture.md: {sorted(units - set(LAYER))}"


def test_no_import_cycles_between_files() -> None:
    assert _cycles(_without_facades(_graph())) == []


def test_no_import_cycles_between_subpackages() -> None:
    units: dict[str, set[str]] = {}
    for name, deps in _graph().items():
        if _unit(name) == "__init__":
            continue   # the top-level facade imports everything by design
        units.setdefault(_unit(name), set()).update(_unit(d) for d in deps if _unit(d) != _unit(name))
    assert _cycles(units) == []


@pytest.mark.parametrize("module", sorted(m for m in _graph() if _unit(m) != "__init__"))
def test_imports_point_down(module: str) -> None:
    here = _unit(module)
    wrong = [d for d in sorted(_graph()[module]) if _unit(d) != here and
             (_unit(d) == "__init__" or LAYER[_unit(d)] >= LAYER[here])]
    assert wrong == [], f"{module} (layer {LAYER[here]}) imports from the same or a higher layer: {wrong}"


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    """The parser finds an import inside a function body (the kind that hid the old cycles)."""
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from robustloss.runs import load_run\n    return load_run\n")
    assert _imports(source, "robustloss.fake", {"robustloss.runs"}) == {"robustloss.runs"}


def test_subpackages_reachable_from_the_top() -> None:
    assert robustloss.attacks.PGD.name == "pgd"
    assert "mmc" in robustloss.objectives.OBJECTIVES.names()
    assert callable(robustloss.runs.evaluate_run) and callable(robustloss.load_run)
