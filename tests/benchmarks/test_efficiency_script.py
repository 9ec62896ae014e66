"""``benchmarks/efficiency.py`` at tiny sizes: it counts a step's FLOPs, times it against a matrix
product measured in the same process and lists the operators by self time (no figure is checked:
timings stay out of tests)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from invflow.train import heap

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def efficiency(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import efficiency

    return efficiency


def test_a_tiny_run_writes_flops_seconds_fraction_and_the_profile(efficiency, tmp_path: Path) -> None:
    out = tmp_path / "efficiency.json"
    assert efficiency.main(["--cases", "glow", "resflow", "--batch", "2", "--steps", "1", "--warmup", "0",
                            "--profile-steps", "1", "--top", "5", "--matmul-size", "64",
                            "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["meta"]["matmul_gflop_per_s"] > 0 and result["meta"]["threads"] == 1
    # measured as invflow train runs: with its allocator setting where the C library has it
    assert result["meta"]["retain_freed_memory"] is (heap._glibc() is not None)
    rows = {row["case"]: row for row in result["results"]}
    assert set(rows) == {"glow", "resflow"}
    for row in rows.values():
        assert row["gflop"] > 0 and row["step_s"] > 0 and row["fraction_of_matmul"] > 0
        assert len(row["profile"]) == 5 and all(op["calls_per_step"] >= 1 for op in row["profile"])
        assert row["products_s"] > 0 and row["product_calls_per_step"] >= 1
        assert row["products_fraction_of_matmul"] > 0
    # the residual step's convolutions and their double backward are counted, not only the forward
    assert rows["resflow"]["gflop"] > rows["glow"]["gflop"] / 10


def test_the_fused_conditioner_counts_the_flops_of_the_plain_one(efficiency, monkeypatch) -> None:
    """oneDNN's fused product is registered with the FLOP counter: Glow's conditioner counts the same
    FLOPs on its fused training path as on the differentiable one."""
    import invflow.layers.conv_conditioner as conv_conditioner

    torch.manual_seed(0)
    net = conv_conditioner.ConvConditioner(2, 4, 16)
    x = torch.randn(3, 2, 6, 5, requires_grad=True)

    def step() -> None:
        net(x).sum().backward()

    fused = efficiency.counted_flops(step)
    monkeypatch.setattr(conv_conditioner, "fused_linear_relu_available", lambda: False)
    assert efficiency.counted_flops(step) == fused > 0


def test_the_product_timer_times_counted_operators_once(efficiency) -> None:
    """Only operators with a FLOP formula are timed, each call once (a convolution's inner calls are
    not counted again)."""
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    timer = efficiency.ProductTimer()
    with timer:
        (a @ b).relu()
        torch.nn.functional.conv2d(x, w, padding=1)
        (a + b).exp()
    assert timer.calls == 2 and timer.seconds > 0
