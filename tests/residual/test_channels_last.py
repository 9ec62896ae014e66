"""Channels-last residual nets against the plain (NCHW) layout: the same values, first and second
derivatives (``gradgradcheck`` in float64), and the fused LipSwish when its incoming gradients
arrive in the other layout (the double backward of a convolution hands back NCHW tensors)."""
from __future__ import annotations

import pytest
import torch

from invflow.residual import InvertibleResidualBlock, SpectralNormConv2d, conv_residual_net
from invflow.residual.activations import lipswish, lipswish_reference

CL = torch.channels_last


@pytest.fixture
def nchw(monkeypatch: pytest.MonkeyPatch):
    """A context that switches the channels-last layout off."""
    def off() -> None:
        monkeypatch.setattr(SpectralNormConv2d, "channels_last", False)
    return off


def _net(seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    g = conv_residual_net(3, 5, coeff=0.9).double()
    g(torch.randn(1, 3, 4, 4, dtype=torch.float64))  # size and converge the power iterations
    return g.eval()


def _derivatives(g: torch.nn.Module, x: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> list[torch.Tensor]:
    """``g(x)``, ``∂<g, v>/∂(x, θ)`` and the derivative of ``<vᵀJ, w>`` (the Neumann surrogate's pattern)."""
    params = list(g.parameters())
    y = g(x)
    first = torch.autograd.grad(y, [x, *params], v, create_graph=True)
    second = torch.autograd.grad((first[0] * w).sum(), [x, *params], materialize_grads=True)
    return [y, *first, *second]


def test_channels_last_net_matches_nchw_values_and_two_derivatives(nchw) -> None:
    g = _net()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    v, w = torch.randn_like(x), torch.randn_like(x)
    got = _derivatives(g, x, v, w)
    assert got[0].is_contiguous(memory_format=CL) and not got[0].is_contiguous()
    nchw()
    want = _derivatives(g, x, v, w)
    assert want[0].is_contiguous()
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_channels_last_conv_gradgradcheck_float64() -> None:
    torch.manual_seed(1)
    layer = SpectralNormConv2d(2, 2, 3, coeff=0.9).double()
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    layer(x)
    layer.eval()
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))


def test_lipswish_second_derivatives_with_mixed_layouts() -> None:
    """x channels-last, the incoming second-order gradient NCHW (as a convolution's double backward
    returns it): the fused double backward matches the unfused expression."""
    torch.manual_seed(2)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_(True)
    beta = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    v, w = torch.randn(2, 4, 3, 3, dtype=torch.float64), torch.randn(2, 4, 3, 3, dtype=torch.float64)

    def twice(f) -> tuple[torch.Tensor, ...]:
        g = torch.autograd.grad(f(x, beta), x, v.contiguous(memory_format=CL), create_graph=True)[0]
        return torch.autograd.grad((g * w).sum(), (x, beta))  # w NCHW: its gradient reaches f NCHW

    for a, b in zip(twice(lipswish), twice(lipswish_reference)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert torch.autograd.gradgradcheck(lipswish, (x, beta))


def test_channels_last_block_logdet_matches_brute_force(nchw) -> None:
    """An exact-log-det block computed channels-last equals the NCHW one and the brute-force Jacobian."""
    g = _net(3)
    block = InvertibleResidualBlock(g, (3, 4, 4), logdet="exact")
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    _, got = block(x)
    params = list(g.parameters())
    got_grad = torch.autograd.grad(got.sum(), params, materialize_grads=True)
    jac = [torch.autograd.functional.jacobian(lambda t: g(t.unsqueeze(0))[0], xi).reshape(48, 48) for xi in x]
    brute = torch.stack([torch.linalg.slogdet(torch.eye(48, dtype=torch.float64) + j).logabsdet for j in jac])
    torch.testing.assert_close(got, brute, atol=1e-10, rtol=0)
    nchw()
    _, want = block(x)
    want_grad = torch.autograd.grad(want.sum(), params, materialize_grads=True)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    for a, b in zip(got_grad, want_grad):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
