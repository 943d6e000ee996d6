"""No function in the package grows past one screen (ruff has no rule for length in lines).

Long functions are where hooks hide their time budget and their undo; split them into named
steps instead. The generated protobuf modules are not ours and are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

from manifests import REPO

MAX_LINES = 60
PACKAGE = REPO / "src" / "multinet"


def long_functions(root: Path, limit: int) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if "_pb" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    where = f"{path.relative_to(root)}:{node.lineno}"
                    found.append(f"{where} {node.name}: {lines} lines")
    return found


def test_no_function_in_the_package_is_longer_than_one_screen() -> None:
    assert long_functions(PACKAGE, MAX_LINES) == []


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def f() -> None:\n{body}\n")
    assert long_functions(tmp_path, MAX_LINES) != []
