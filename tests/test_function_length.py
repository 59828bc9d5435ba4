"""Structure rule of the package: no function under `hf_genrec/` is longer than 100 lines (docstring included).

A function that long does the work of a module; split it into named steps instead.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_genrec"
MAX_LINES = 100


def function_lengths(root: Path) -> list[tuple[int, str]]:
    """(lines, 'path:line:name') of every function and method under `root`, longest first."""
    lengths = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
                lengths.append((node.end_lineno - start + 1, f"{path.relative_to(root.parent)}:{node.lineno}:{node.name}"))
    return sorted(lengths, reverse=True)


def test_the_length_check_sees_long_functions(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "module.py").write_text(f"def long():\n{body}\n\ndef short():\n    return 1\n", encoding="utf-8")
    lengths = function_lengths(tmp_path)
    assert lengths[0][0] == MAX_LINES + 1 and lengths[0][1].endswith(":long")
    assert lengths[1][0] == 2


def test_no_function_longer_than_the_limit():
    too_long = [f"{where} ({lines} lines)" for lines, where in function_lengths(PACKAGE) if lines > MAX_LINES]
    assert not too_long, f"functions over {MAX_LINES} lines: {too_long}"
