"""Every function in src/ reads at once (issue 14): at most 60 lines, docstring excluded, and at
most 12 branches. Ruff enforces the branch and complexity limits (C901, PLR0912 at 12, in
pyproject.toml, run by .ci/run); this test enforces the length, which ruff has no rule for."""
from __future__ import annotations

import ast
from pathlib import Path

import invflow

PACKAGE = Path(invflow.__file__).parent
MAX_LINES = 60

# "path:function" -> why it is longer; empty when none is.
EXCEPTIONS: dict[str, str] = {}


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the function's last line, its docstring left out."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if ast.get_docstring(node, clean=False) is not None:
        lines -= first.end_lineno - first.lineno + 1
    return lines


def long_functions(root: Path) -> dict[str, int]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(node) > MAX_LINES:
                found[f"{path.relative_to(root).as_posix()}:{node.name}"] = code_lines(node)
    return found


def test_no_function_is_longer_than_60_lines() -> None:
    too_long = {name: n for name, n in long_functions(PACKAGE).items() if name not in EXCEPTIONS}
    assert not too_long, f"functions over {MAX_LINES} lines (docstring excluded): {too_long}"


def test_every_exception_is_still_needed() -> None:
    stale = sorted(set(EXCEPTIONS) - set(long_functions(PACKAGE)))
    assert not stale, f"no longer over {MAX_LINES} lines, remove from EXCEPTIONS: {stale}"


def test_the_checker_counts_code_not_docstrings(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f'def long():\n    """doc\n    string"""\n{body}\n\ndef short():\n'
                                   f'    """{"doc " * 5}"""\n    return 1\n')
    assert long_functions(tmp_path) == {"m.py:long": MAX_LINES + 1}
