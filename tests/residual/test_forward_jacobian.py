"""Forward-mode Jacobians of residual MLPs (``residual/forward_jacobian.py``) against autograd's
Jacobian in float64, and a vector block's exact log-det and gradients in forward mode against
the reverse-mode rows (``exact_logdet``) it replaces."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from invflow.residual import (
    InvertibleResidualBlock,
    LipSwish,
    SpectralNormLinear,
    conv_residual_net,
    mlp_residual_net,
)
from invflow.residual.activations import lipswish_reference, lipswish_with_derivative
from invflow.residual.forward_jacobian import forward_with_jacobian, supports_forward_jacobian
from invflow.residual.logdet import exact_logdet

ORDERS = [None, "f", [2, 1, 1.5, 2.5, 2]]


def _net(dim: int, norm_orders: object, learn: object = False, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    g = mlp_residual_net(dim, 12, n_hidden=3, coeff=0.9, norm_orders=norm_orders, learn_norm_orders=learn)
    g = g.double()
    with torch.no_grad():
        for m in g:
            if isinstance(m, LipSwish):
                m.rho.add_(0.5 * torch.randn(()))  # β away from 1, so β's gradient is exercised
    return g


@pytest.mark.parametrize("norm_orders", ORDERS)
@pytest.mark.parametrize("dim", [2, 3])
def test_jacobian_matches_autograd(dim: int, norm_orders: object) -> None:
    g = _net(dim, norm_orders)
    x = 2 * torch.randn(5, dim, dtype=torch.float64)
    gx, jac_t = forward_with_jacobian(g, x)
    torch.testing.assert_close(gx, g(x), atol=1e-14, rtol=0)
    for b in range(x.shape[0]):
        want = torch.autograd.functional.jacobian(lambda v: g(v.unsqueeze(0))[0], x[b])  # [i, j] = ∂g_i/∂x_j
        torch.testing.assert_close(jac_t[b], want.T, atol=1e-13, rtol=0)


def test_activation_first_in_the_chain_starts_from_its_diagonal() -> None:
    torch.manual_seed(1)
    g = nn.Sequential(LipSwish(), SpectralNormLinear(3, 3, coeff=0.9), LipSwish()).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    _, jac_t = forward_with_jacobian(g, x)
    for b in range(4):
        want = torch.autograd.functional.jacobian(lambda v: g(v.unsqueeze(0))[0], x[b])
        torch.testing.assert_close(jac_t[b], want.T, atol=1e-14, rtol=0)


LEARN_CASES = [(None, False), ("f", False), (2, "shared"), (2, "per-state")]


@pytest.mark.parametrize(("norm_orders", "learn"), LEARN_CASES)
def test_block_logdet_and_gradients_equal_reverse_mode_rows(norm_orders: object, learn: object) -> None:
    """The forward-mode block against ``exact_logdet`` (one reverse-mode row per basis vector,
    double backward to train): values, and gradients in the input and every parameter."""
    g = _net(2, norm_orders, learn=learn, seed=2)
    block = InvertibleResidualBlock(g, (2,), logdet="exact")
    x = (2 * torch.randn(6, 2, dtype=torch.float64)).requires_grad_(True)
    y, logdet = block(x)
    xr = x.detach().requires_grad_(True)
    gx = g(xr)
    want = exact_logdet(gx, xr, create_graph=True)
    torch.testing.assert_close(y, xr + gx, atol=1e-14, rtol=0)
    torch.testing.assert_close(logdet, want, atol=1e-13, rtol=0)
    w = torch.randn(6, dtype=torch.float64)  # an uneven weighting of the samples
    params = [p for p in g.parameters() if p.requires_grad]
    got = torch.autograd.grad((w * logdet).sum() + y.sum(), [x, *params], materialize_grads=True)
    ref = torch.autograd.grad((w * want).sum() + (xr + gx).sum(), [xr, *params], materialize_grads=True)
    assert len(params) > 0
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_no_grad_forward_builds_no_graph() -> None:
    g = _net(2, "f")
    block = InvertibleResidualBlock(g, (2,), logdet="exact")
    x = torch.randn(3, 2, dtype=torch.float64)
    with torch.no_grad():
        y, logdet = block(x)
    assert not y.requires_grad and not logdet.requires_grad
    torch.testing.assert_close(logdet, block(x)[1].detach(), atol=0, rtol=0)


def test_which_nets_take_the_forward_mode_path() -> None:
    assert supports_forward_jacobian(mlp_residual_net(2, 8))
    assert not supports_forward_jacobian(conv_residual_net(2, 4))  # images keep the reverse-mode rows
    assert not supports_forward_jacobian(nn.Sequential())
    assert not supports_forward_jacobian(nn.Sequential(SpectralNormLinear(2, 2), nn.Tanh()))
    assert InvertibleResidualBlock(mlp_residual_net(2, 8), (2,), logdet="exact").carries_jacobian
    assert not InvertibleResidualBlock(conv_residual_net(2, 4), (2, 4, 4), logdet="exact").carries_jacobian


def test_switching_a_block_back_to_reverse_mode_rows_gives_the_same_logdet() -> None:
    block = InvertibleResidualBlock(_net(2, "f", seed=5), (2,), logdet="exact")
    x = torch.randn(4, 2, dtype=torch.float64)
    forward_mode = block(x)[1]
    block.carries_jacobian = False
    torch.testing.assert_close(block(x)[1], forward_mode, atol=1e-13, rtol=0)


def test_a_chain_that_changes_the_dimension_is_refused() -> None:
    g = nn.Sequential(SpectralNormLinear(2, 3), LipSwish())
    with pytest.raises(ValueError, match="maps R\\^2 to R\\^3"):
        forward_with_jacobian(g, torch.randn(4, 2))
    with pytest.raises(ValueError, match="batch of vectors"):
        forward_with_jacobian(g, torch.randn(4, 2, 1))


def test_fused_lipswish_with_derivative_matches_autograd_to_second_order() -> None:
    """``(f(x), f'(x))`` fused against ``x·σ(βx)/1.1`` and its autograd derivative: values,
    ``gradcheck`` and ``gradgradcheck`` in float64."""
    torch.manual_seed(3)
    x = (3 * torch.randn(4, 5, dtype=torch.float64)).requires_grad_(True)
    beta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def unfused(x: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = lipswish_reference(x, beta)
        return y, torch.autograd.grad(y.sum(), x, create_graph=True)[0]

    for a, b in zip(lipswish_with_derivative(x, beta), unfused(x, beta)):
        torch.testing.assert_close(a, b, atol=1e-15, rtol=0)
    assert torch.autograd.gradcheck(lipswish_with_derivative, (x, beta))
    assert torch.autograd.gradgradcheck(lipswish_with_derivative, (x, beta))
    v, w = torch.randn_like(x), torch.randn_like(x)

    def projected_grads(f) -> tuple[torch.Tensor, ...]:
        y, d = f(x, beta)
        return torch.autograd.grad((y * v).sum() + (d * w).sum(), (x, beta))

    for a, b in zip(projected_grads(lipswish_with_derivative), projected_grads(unfused)):
        torch.testing.assert_close(a, b, atol=1e-13, rtol=0)
