"""``invflow.testing.check_flow`` catches what it promises to: planted faults in a user's layer
(a sign-flipped log-det, a log-det off by a constant, a layer that mixes samples, a parameter
without gradient, a conditional layer that ignores its context), and passes a correct layer."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from invflow import Flow
from invflow.layers import AffineCoupling
from invflow.testing import FlowCheckError, check_flow


class Scale(Flow):
    """``z = exp(s) ⊙ x``: a correct elementwise scale, with knobs to plant each fault."""

    def __init__(self, dims: int, fault: str = "") -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.linspace(-0.5, 1.0, dims))
        self.unused = nn.Parameter(torch.zeros(1)) if fault == "unused-parameter" else None
        self.fault = fault

    def _logdet(self, x: Tensor) -> Tensor:
        logdet = self.log_scale.sum().expand(x.shape[0])
        if self.fault == "sign":
            return -logdet
        if self.fault == "constant":
            return logdet + 0.1
        return logdet

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = x * self.log_scale.exp()
        if self.fault == "mixes-samples":
            z = z + 0.01 * x.mean(dim=0, keepdim=True)
        return z, self._logdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = z * (-self.log_scale).exp()
        if self.fault == "mixes-samples":  # the exact inverse of the mixing forward
            x = x - 0.01 * x.mean(dim=0, keepdim=True) / (1 + 0.01 * (-self.log_scale).exp())
        return x, -self._logdet(x)


def test_a_correct_layer_passes_every_check() -> None:
    report = check_flow(Scale(3), torch.randn(4, 3))
    assert set(report) == {"logdet", "inverse", "inverse_logdet", "batch", "gradients"}
    assert report["logdet"] < 1e-12 and report["gradients"] == 1


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("sign", r"logdet: sample 0: logdet -0\.75 brute force 0\.75"),
        ("constant", r"logdet: sample 0: logdet 0\.85 brute force 0\.75 \(error 0\.1"),
        ("mixes-samples", r"batch: sample 0 computed alone differs from its row of the batch"),
        ("unused-parameter", r"gradients: 1 parameter\(s\) receive no gradient: unused"),
    ],
)
def test_planted_faults_are_caught_with_their_numbers(fault: str, message: str) -> None:
    layer = Scale(3, fault)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(FlowCheckError, match=message):
        if fault == "mixes-samples":  # its log-det is right; only the batch check can see it
            from invflow.testing import check_batch_independence

            check_batch_independence(layer.double(), x.double())
        else:
            check_flow(layer, x)


def test_a_conditional_layer_that_ignores_its_context_is_caught() -> None:
    layer = AffineCoupling((2,), hidden=8, context_features=3)  # zero-initialised: ignores c at first
    x, c = torch.randn(4, 2), torch.randn(4, 3)
    with pytest.raises(FlowCheckError, match="context: the output does not change with the context"):
        check_flow(layer, x, c)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert check_flow(layer, x, c)["context"] > 0


def test_check_flow_leaves_the_layer_alone() -> None:
    layer = Scale(2)
    before = layer.log_scale.detach().clone()
    check_flow(layer, torch.randn(3, 2))
    assert layer.log_scale.dtype == torch.float32 and torch.equal(layer.log_scale.detach(), before)
    assert layer.log_scale.grad is None
