"""``benchmarks/fused_conditioner.py`` at a tiny size: paired rounds of Glow steps with and without
the native kernels and with and without the fused conditioner, the switches restored after (no
figure is checked: timings stay out of tests)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import invflow.layers.conv_conditioner as conv_conditioner

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.skipif(not conv_conditioner.fused_linear_relu_available(), reason="no oneDNN fused product")
def test_one_paired_round_records_both_sides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import fused_conditioner

    switch, native = conv_conditioner.fused_linear_relu_available, conv_conditioner.native_kernels
    out = tmp_path / "fused.json"
    assert fused_conditioner.main(["--batch", "2", "--rounds", "2", "--warmup", "0", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    expected = ["fused"] if native() is None else ["native", "fused"]
    assert [row["comparison"] for row in rows] == expected
    for row in rows:
        assert row["with_s"] > 0 and row["without_s"] > 0 and row["rounds"] == 2
        assert row["case"] == "glow-small"
    assert conv_conditioner.fused_linear_relu_available is switch
    assert conv_conditioner.native_kernels is native
