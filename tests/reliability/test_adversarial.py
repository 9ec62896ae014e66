"""Every attack of ``tests/reliability/adversarial.py`` holds (issue 24's classes), one test each."""
from __future__ import annotations

from pathlib import Path

import pytest
from reliability.adversarial import ATTACKS

CASES = [(cls, fn) for cls, attacks in ATTACKS.items() for fn in attacks]


@pytest.mark.parametrize(("cls", "attack"), CASES, ids=[f"{c}: {fn.__name__}" for c, fn in CASES])
def test_the_attack_holds(cls: str, attack, tmp_path: Path) -> None:
    held, what = attack(tmp_path)
    assert held, f"{cls}: {what}"


def test_every_class_has_attacks() -> None:
    assert len(ATTACKS) == 4 and all(len(a) >= 3 for a in ATTACKS.values())
