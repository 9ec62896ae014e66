"""bits/dim against hand-computed values (docs/architecture.md section 3)."""
import math

import pytest
import torch
from torch import Tensor

from invflow.core.distributions import StandardNormal
from invflow.core.flow import Flow, SequentialFlow
from invflow.core.model import FlowModel, nats_to_bits_per_dim


class Probit(Flow):
    """``z = Φ^{-1}(x)``: pushes U[0,1]^D onto N(0, I), so the model density is uniform on the cube."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = math.sqrt(2) * torch.erfinv(2 * x - 1)
        log_normal = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
        return z.reshape(x.shape[0], -1), -log_normal.reshape(x.shape[0], -1).sum(1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = 0.5 * (1 + torch.erf(z.reshape(-1, 3, 2, 2) / math.sqrt(2)))
        return x, -self(x)[1]


def test_uniform_model_has_exactly_n_bits_per_dim() -> None:
    # A uniform density on [0,1]^D gives every dequantized image probability K^-D: bpd = n_bits.
    model = FlowModel(SequentialFlow(Probit()), StandardNormal((12,)), (3, 2, 2)).double()
    torch.manual_seed(0)
    for n_bits in (8, 5, 1):
        x_int = torch.randint(0, 2**n_bits, (4, 3, 2, 2))
        bpd = model.bits_per_dim(x_int, n_bits)
        torch.testing.assert_close(bpd, torch.full((4,), float(n_bits), dtype=torch.float64))


def test_standard_normal_model_matches_formula() -> None:
    # Identity flow onto N(0, I) over D = 2 dims: bpd = (-log N(x) + D·8·ln2) / (D ln2).
    model = FlowModel(SequentialFlow(), StandardNormal((2,)), (2,)).double()
    x_int = torch.tensor([[0, 255], [128, 7]])
    torch.manual_seed(1)
    bpd = model.bits_per_dim(x_int, 8)
    torch.manual_seed(1)
    u = torch.rand(2, 2, dtype=torch.float64)
    x = (x_int.double() + u) / 256
    log_p = (-0.5 * x**2 - 0.5 * math.log(2 * math.pi)).sum(1)
    expected = (-log_p + 2 * 8 * math.log(2)) / (2 * math.log(2))
    torch.testing.assert_close(bpd, expected)
    torch.testing.assert_close(nats_to_bits_per_dim(log_p, 2, 8), expected)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 2), "integer"),
    (torch.tensor([[0, 256]]), r"\[0, 256\)"),
    (torch.tensor([[-1, 3]]), r"\[0, 256\)"),
])
def test_bad_integer_images_are_rejected(bad: Tensor, message: str) -> None:
    model = FlowModel(SequentialFlow(), StandardNormal((2,)), (2,))
    with pytest.raises(ValueError, match=message):
        model.bits_per_dim(bad, 8)
