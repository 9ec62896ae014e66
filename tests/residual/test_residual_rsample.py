"""Samples drawn through residual blocks carry exact gradients: the issue's silent-gradient case
(residual blocks in a plain FlowModel), for vector and image blocks, against central finite
differences of the same seeded draw (float64, eval mode so the normalised weights are a fixed
function of the weights)."""
from __future__ import annotations

import pytest
import torch

from invflow import FlowModel, SequentialFlow, StandardNormal
from invflow.core.flow import Flatten
from invflow.layers.actnorm import ActNorm
from invflow.residual import InvertibleResidualBlock, conv_residual_net, mlp_residual_net


def vector_model() -> FlowModel:
    torch.manual_seed(0)
    block = InvertibleResidualBlock(mlp_residual_net(2, 16, 2), (2,), logdet="exact")
    return FlowModel(SequentialFlow(ActNorm(2, vector=True), block), StandardNormal((2,)), input_shape=(2,))


def image_model() -> FlowModel:
    torch.manual_seed(0)
    block = InvertibleResidualBlock(conv_residual_net(2, 8, coeff=0.9), (2, 4, 4), logdet="exact")
    flow = SequentialFlow(ActNorm(2), block, Flatten((2, 4, 4)))
    return FlowModel(flow, StandardNormal((32,)), input_shape=(2, 4, 4))


def prepared(make) -> FlowModel:
    model = make().double()
    shape = model.input_shape
    model(torch.randn(16, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model.eval()


def draw_loss(model: FlowModel) -> torch.Tensor:
    torch.manual_seed(5)
    return model.rsample(6, temperature=0.8).pow(2).sum()


@pytest.mark.parametrize("make", [vector_model, image_model], ids=["vector", "image"])
def test_every_residual_parameter_gets_the_finite_difference_gradient(make) -> None:
    model = prepared(make)
    draw_loss(model).backward()
    block = model.flow.flows[1]
    params = dict(block.g.named_parameters())
    assert all(p.grad is not None for p in params.values()), [n for n, p in params.items() if p.grad is None]
    gen = torch.Generator().manual_seed(3)
    for name, p in params.items():
        direction = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        eps = 1e-6
        with torch.no_grad():
            p.add_(eps * direction)
            plus = float(draw_loss(model))
            p.sub_(2 * eps * direction)
            minus = float(draw_loss(model))
            p.add_(eps * direction)
        numeric = (plus - minus) / (2 * eps)
        analytic = float((p.grad * direction).sum())
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(numeric)), (name, numeric, analytic)


def test_rsample_and_log_prob_through_residual_blocks_matches_log_prob() -> None:
    model = prepared(vector_model)
    torch.manual_seed(4)
    x, log_p = model.rsample_and_log_prob(5)
    torch.testing.assert_close(log_p.detach(), model.log_prob(x.detach()).detach(), atol=1e-9, rtol=0)
    (log_p.sum() + x.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
