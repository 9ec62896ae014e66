"""``benchmarks/narrow_conv.py`` at a tiny size: the operator table (each product form checked against
oneDNN's output before it is timed) and one paired eager step round, the setting restored after (no
figure is checked: timings stay out of tests)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from invflow.residual import narrow_conv

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_operator_table_and_a_paired_eager_round(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import narrow_conv as script

    out = tmp_path / "narrow.json"
    assert script.main(["--cases", "operators", "eager", "--batch", "2", "--rounds", "2", "--warmup", "0",
                        "--operator-steps", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    operators = [r for r in rows if "op" in r]
    assert len(operators) == 3 * 2 * len(script.OPERATOR_SHAPES)
    assert {r["invflow_takes_product"] for r in operators} == {True, False}
    taken = {(r["conv"], r["op"]) for r in operators if r["invflow_takes_product"]}
    assert ("first 64<-1 at 28x28", "forward") in taken and ("first 64<-16 at 7x7", "forward") not in taken
    (step,) = [r for r in rows if r.get("case") == "resflow eager"]
    assert step["on_s"] > 0 and step["off_s"] > 0 and step["rounds"] == 2
    assert [narrow_conv.NARROW_OUT_CHANNELS, narrow_conv.NARROW_IN_CHANNELS] == step["narrow_out_in_channels"]
