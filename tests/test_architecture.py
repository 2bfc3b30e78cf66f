"""Data flows one way: no import cycle between unimae's packages nor between the modules of one package,
no import against the flow, and no oversized functions anywhere in the package.

Every import counts, also the ones inside functions (a lazy import is still a dependency). A "unit" is a
subpackage (``unimae.training``) or a top-level module (``unimae.io``); the root ``unimae/__init__.py`` is
the public facade and is left out, and nothing inside the package may import from it.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "unimae"
MAX_FUNCTION_LINES = 60
# (unit, unit it must not import): why
FORBIDDEN = {
    (
        "evaluation",
        "training",
    ): "the evaluation is generic (a run's config is read through unimae.config_names)",
}


def _unit(module: str) -> str | None:
    """``unimae.training.loop`` -> ``training``; ``unimae.io`` -> ``io``; ``unimae`` -> None (facade)."""
    parts = module.split(".")
    if parts[0] != "unimae" or len(parts) == 1:
        return None
    return parts[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_submodule(package: str, name: str) -> bool:
    """Whether ``package.name`` is a module of unimae (``package`` dotted, e.g. ``unimae.evaluation``)."""
    folder = SRC.parent.joinpath(*package.split("."))
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("unimae"):  # `from unimae import io` imports the module unimae.io
                submodules = [a.name for a in node.names if _is_submodule(module, a.name)]
                found += [(node.lineno, f"{module}.{name}") for name in submodules]
                if len(submodules) == len(node.names):
                    continue
            found.append((node.lineno, module))
    return found


def _graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for path in sorted(SRC.rglob("*.py")):
        src_unit = _unit(_module_name(path))
        if src_unit is None:
            continue
        for line, module in _imports(path):
            dst_unit = _unit(module) if module.startswith("unimae") else None
            if dst_unit is None or dst_unit == src_unit:
                continue
            edges.setdefault(src_unit, set()).add(dst_unit)
            where.setdefault((src_unit, dst_unit), f"{path.relative_to(SRC.parent)}:{line}")
    return edges, where


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}}) is None


def _assert_no_cycle(graph: tuple[dict[str, set[str]], dict[tuple[str, str], str]], what: str) -> None:
    """AssertionError naming each hop of a cycle in ``graph`` (edges, where each edge's import is)."""
    edges, where = graph
    cycle = _find_cycle(edges)
    if cycle:
        hops = [f"{a} -> {b} ({where[(a, b)]})" for a, b in zip(cycle, cycle[1:])]
        raise AssertionError(f"import cycle between {what}:\n  " + "\n  ".join(hops))


def test_no_import_cycle_between_packages():
    _assert_no_cycle(_graph(), "packages")


def test_nothing_inside_imports_the_facade():
    offenders = [
        f"{path.relative_to(SRC.parent)}:{line}"
        for path in SRC.rglob("*.py")
        if path != SRC / "__init__.py"
        for line, module in _imports(path)
        if module == "unimae"
    ]
    assert not offenders, f"import from the root facade (import the defining module instead): {offenders}"


def test_functions_fit_on_a_screen():
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_import_against_the_flow():
    edges, where = _graph()
    found = [
        f"{a} -> {b} ({where[(a, b)]}): {why}" for (a, b), why in FORBIDDEN.items() if b in edges.get(a, ())
    ]
    assert not found, "\n  ".join(["imports against the flow:", *found])


def _package_of(path: Path) -> str:
    """The package a module belongs to: its own name for an ``__init__.py``, else its parent's."""
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def _module_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    """Imports between the modules of one package (a package's ``__init__`` counts as one of its modules)."""
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for name, path in sorted(paths.items()):
        for line, module in _imports(path):
            if module == name or module not in paths or _package_of(paths[module]) != _package_of(path):
                continue
            edges.setdefault(name, set()).add(module)
            where.setdefault((name, module), f"{path.relative_to(SRC.parent)}:{line}")
    return edges, where


def test_module_graph_sees_imports_inside_functions_and_from_the_package():
    edges, _ = _module_graph()
    assert "unimae.evaluation.results" in edges["unimae.evaluation.report"]  # at the top
    assert "unimae.evaluation.offline_v2" in edges["unimae.evaluation.task_sets"]  # inside a function
    assert "unimae.evaluation.offline_data" in edges["unimae.evaluation.offline_tasks"]  # from the package


def test_no_import_circle_between_the_modules_of_a_package():
    _assert_no_cycle(_module_graph(), "the modules of a package")
