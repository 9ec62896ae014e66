"""``benchmarks/vs_reference.py`` says which reference is missing and exits 2 (no timing here)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def vs_reference(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import vs_reference

    return vs_reference


def test_missing_resflow_checkout_exits_2(
    vs_reference, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert vs_reference.main(["--cases", "resflow", "--resflow-ref", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no resflows/resflow.py there" in err and "rtqichen/residual-flows" in err
    assert vs_reference.main(["--cases", "resflow-eval"]) == 2
    assert "pass --resflow-ref PATH" in capsys.readouterr().err


def test_missing_normflows_exits_2(
    vs_reference, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "normflows", None)  # import normflows -> ImportError
    assert vs_reference.main(["--cases", "glow"]) == 2
    assert "pip install normflows==1.7.3" in capsys.readouterr().err


def test_too_few_rounds_exits_2(vs_reference, capsys: pytest.CaptureFixture) -> None:
    assert vs_reference.main(["--cases", "glow", "--rounds", "3"]) == 2
    assert "--rounds must be >= 12" in capsys.readouterr().err
