"""Dependencies run one way (docs/architecture.md): cli → compare → api → train → models →
layers / residual → core → data → config (viz and storage beside config). A module may import its own
package and packages of a lower rank only, at module level or inside functions."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import invflow

PACKAGE = Path(invflow.__file__).parent

# top-level module or package of invflow -> rank; a module may import only strictly lower ranks
RANKS = {
    "run_files": -1,
    "config": 0, "viz": 0, "configs": 0, "storage": 0, "version": 0,
    "data": 1,
    "core": 2,
    "layers": 3, "residual": 3, "testing": 3,
    "models": 4,
    "train": 5,
    "api": 6, "latent": 6, "info": 6, "model_file": 6,
    "compare": 7,
    "cli": 8,
    "__init__": 9, "__main__": 9,
}


def top_level(module: str) -> str:
    """``invflow.train.loop`` -> ``train``; ``invflow`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every ``invflow.*`` module a source file imports (any nesting), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "invflow"]
        elif isinstance(node, ast.ImportFrom) and node.module == "invflow":
            # the package root's lazy exports stand for the modules defining them; any other name is a
            # submodule (``from invflow import run_files``)
            out += [(node.lineno, invflow._EXPORTS.get(a.name, f"invflow.{a.name}")) for a in node.names
                    if a.name != "__version__"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "invflow":
                out.append((node.lineno, node.module))
    return out


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_rank() -> None:
    owners = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in source_files()}
    assert owners <= set(RANKS), f"give these a rank: {sorted(owners - set(RANKS))}"


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_one_above_it(path: Path) -> None:
    owner = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if owner == "__init__":
        return  # the package's lazy exports (PEP 562) name modules as strings only
    bad = [f"line {line}: {module}" for line, module in imported_modules(path)
           if top_level(module) != owner and RANKS[top_level(module)] >= RANKS[owner]]
    assert not bad, f"{path.relative_to(PACKAGE)} (rank {RANKS[owner]}) imports upwards: {bad}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from invflow.models import build_model\nimport invflow.train.loop as l\n"
                      "from invflow import __version__, load_checkpoint\n")
    assert sorted(imported_modules(source)) == [
        (2, "invflow.models"),
        (3, "invflow.train.loop"),
        (4, "invflow.api"),
    ]


@pytest.mark.parametrize("module", ["invflow.config", "invflow.data", "invflow.core.model"])
def test_lower_modules_load_no_model_code(module: str) -> None:
    """``import invflow.config`` (and data, core) in a fresh interpreter loads no module above it,
    and no scipy: scipy is read only where it is used (SVHN's .mat files, the roulette's
    incomplete gamma)."""
    watched = ("invflow", "scipy")
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.split('.')[0] in {watched}))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    rank = RANKS[top_level(module)]
    above = [m for m in loaded if m.startswith("invflow.") and RANKS[top_level(m)] > rank]
    scipy = [m for m in loaded if m.split(".")[0] == "scipy"]
    assert module in loaded and not above and not scipy, f"import {module} loaded {above + scipy[:3]}"
