"""Structure rules of the package's imports: no import cycles (imports inside functions included), and only
the command line reaches into `hf_genrec.commands`.

A cycle hidden in a function-level import still couples the two modules both ways (neither can be read,
tested or moved without the other) and fails at import time as soon as someone hoists the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_genrec"
COMMANDS = "hf_genrec.commands"
# The command line is the one place allowed to import the command modules.
COMMAND_IMPORTERS = ("hf_genrec.cli", COMMANDS)


def module_name(path: Path, root: Path) -> str:
    """`root/pkg/sub/mod.py` -> `pkg.sub.mod`; a package's `__init__.py` is the package itself."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by a `from ... import` (relative levels resolved against `importer`)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]  # a module's `.` is its package; a package's `.` is itself
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path) -> dict[str, set[str]]:
    """`{module: modules of the package it imports}` over every `.py` under `root`, with every import
    statement counted wherever it is (module level, functions, `if TYPE_CHECKING:` blocks)."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = resolve(name, path.name == "__init__.py", node)
                # `from pkg import sub` imports the submodule `pkg.sub` when there is one.
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in paths else module for a in node.names]
            else:
                continue
            edges.update(target for target in targets if target in paths and target != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as `[a, b, ..., a]`, or None when it is acyclic (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            target = next(stack[-1], None)
            if target is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(target) == 1:
                return path[path.index(target):] + [target]
            elif not state.get(target):
                state[target] = 1
                path.append(target)
                stack.append(iter(sorted(graph[target])))
    return None


def all_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles found by removing one edge of each cycle in turn, so a failure lists every tangle at once."""
    graph = {name: set(edges) for name, edges in graph.items()}
    cycles = []
    while (cycle := find_cycle(graph)) is not None:
        cycles.append(cycle)
        graph[cycle[-2]].discard(cycle[-1])
    return cycles


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_the_graph_sees_relative_and_function_level_imports(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "from .a import f\n",
        "a.py": "def f():\n    from .sub import b\n    return b\n",
        "sub/__init__.py": "",
        "sub/b.py": "from ..a import f\nimport os\n",
        "sub/c.py": "from . import b\nfrom .. import a\n",
    })
    graph = import_graph(package)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.a"},
                     "pkg.sub.c": {"pkg.sub.b", "pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    graph["pkg.sub.b"].clear()
    assert find_cycle(graph) is None


def test_the_package_has_no_import_cycles():
    cycles = all_cycles(import_graph(PACKAGE))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_only_the_command_line_imports_the_commands():
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph(PACKAGE).items()
        if not (module in COMMAND_IMPORTERS or module.startswith(f"{COMMANDS}."))
        for target in targets
        if target == COMMANDS or target.startswith(f"{COMMANDS}.")
    )
    assert not offenders, f"modules outside the command line import hf_genrec.commands: {offenders}"
