"""docs/architecture.md stays true where a test can check it: the package map names every
top-level module and package of ``src/invflow`` and nothing that does not exist, and the CLI
section names every command."""

from __future__ import annotations

import re
from pathlib import Path

import invflow
from invflow.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
PACKAGE = Path(invflow.__file__).parent


def mapped_names() -> set[str]:
    """The backticked names in the first column of section 1's package table."""
    section = DOC.read_text().split("## 1.", 1)[1].split("## 2.", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([\w.]+)`", line.split("|")[1]))
    return names


def test_the_package_map_names_every_module_and_nothing_else() -> None:
    actual = {
        p.name.removesuffix(".py")
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" or (p.is_dir() and p.name != "__pycache__")) and not p.name.startswith("__")
    }
    named = mapped_names()
    assert actual - named == set(), f"docs/architecture.md section 1 does not name {sorted(actual - named)}"
    assert named - actual == set(), (
        f"docs/architecture.md section 1 names what does not exist: {sorted(named - actual)}"
    )


def test_the_cli_section_names_every_command() -> None:
    section = DOC.read_text().split("## 7.", 1)[1].split("## 8.", 1)[0]
    subcommands = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [name for name in subcommands.choices if not re.search(rf"\b{name}\b", section)]
    assert not missing, f"docs/architecture.md section 7 does not name the commands {missing}"
