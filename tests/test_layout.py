"""The layout shows the architecture: a package per capability, no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["deployments", "flows", "tasks", "steward"]  # each may import only those after it


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in LAYERS:
        for path in (ROOT / top).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports at run time (lazy imports count; TYPE_CHECKING not)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                # `from pkg import submodule` points at the submodule, not the package
                targets.add(submodule if submodule in known else node.module)
    return {target for target in targets if target in known}


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(path, known) - {name} for name, path in known.items()}


def _cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, trail = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return trail + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, trail + [nxt]))
    return None


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph = _graph()
    cycles = [c for name in sorted(graph) if (c := _cycle_from(graph, name))]
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles[:10])


def test_imports_only_point_down_the_layers() -> None:
    upward = []
    for name, targets in _graph().items():
        layer = LAYERS.index(name.split(".")[0])
        for target in targets:
            if LAYERS.index(target.split(".")[0]) < layer:
                upward.append(f"{name} imports {target}")
    assert not upward, "\n".join(sorted(upward))


def test_steward_root_holds_only_packages_and_three_modules() -> None:
    flat = sorted(path.name for path in (ROOT / "steward").glob("*.py"))
    assert flat == ["__init__.py", "catalog.py", "errors.py"]


def test_every_package_documents_itself_and_declares_its_public_names() -> None:
    missing = []
    for init in (ROOT / "steward").glob("*/__init__.py"):
        tree = ast.parse(init.read_text())
        has_all = any(
            (
                isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "__all__" for t in node.targets)
            )
            or (isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "__all__")
            for node in tree.body
        )
        if not ast.get_docstring(tree) or not has_all:
            missing.append(str(init.relative_to(ROOT)))
    assert not missing, f"packages without a docstring or __all__: {missing}"


def test_steward_core_never_imports_prefect() -> None:
    offenders = []
    for path in (ROOT / "steward").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            module = None
            if isinstance(node, ast.ImportFrom):
                module = node.module
            elif isinstance(node, ast.Import):
                module = node.names[0].name
            if module and module.split(".")[0] == "prefect":
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders
