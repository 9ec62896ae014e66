"""The fused LipSwish against the unfused expression ``x·σ(βx)/1.1`` differentiated by autograd:
values, first and second derivatives (``gradcheck``/``gradgradcheck`` in float64), derivatives
in ``x`` only (the series' products, which skip β), and a residual block's exact log-det and its
gradient against the brute-force Jacobian of the unfused net."""
from __future__ import annotations

import pytest
import torch

from invflow.residual import InvertibleResidualBlock, LipSwish, conv_residual_net
from invflow.residual.activations import lipswish, lipswish_reference


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x = (3 * torch.randn(2, 3, 4, dtype=torch.float64)).requires_grad_(True)
    beta = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    return x, beta


def test_values_and_first_derivatives_match_unfused() -> None:
    x, beta = _inputs()
    y, ref = lipswish(x, beta), lipswish_reference(x, beta)
    torch.testing.assert_close(y, ref, atol=1e-15, rtol=0)
    v = torch.randn_like(x)
    got = torch.autograd.grad(y, (x, beta), v)
    want = torch.autograd.grad(ref, (x, beta), v)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-13, rtol=0)
    # x alone (the log-det series' products): β's reduction is skipped, x's gradient unchanged
    torch.testing.assert_close(torch.autograd.grad(lipswish(x, beta), x, v)[0], want[0], atol=1e-13, rtol=0)


def test_gradcheck_and_gradgradcheck_float64() -> None:
    x, beta = _inputs(1)
    assert torch.autograd.gradcheck(lipswish, (x, beta))
    assert torch.autograd.gradgradcheck(lipswish, (x, beta))


def test_second_derivatives_match_unfused() -> None:
    """The Neumann surrogate's pattern: a differentiable product ``vᵀJ`` differentiated again."""
    x, beta = _inputs(2)
    v, w = torch.randn_like(x), torch.randn_like(x)

    def twice(f) -> tuple[torch.Tensor, ...]:
        g = torch.autograd.grad(f(x, beta), x, v, create_graph=True)[0]
        gb = torch.autograd.grad(f(x, beta).sum(), beta, create_graph=True)[0]
        return torch.autograd.grad((g * w).sum() + gb, (x, beta))

    for a, b in zip(twice(lipswish), twice(lipswish_reference)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_no_grad_forward_uses_the_plain_expression() -> None:
    x, beta = _inputs(3)
    with torch.no_grad():
        torch.testing.assert_close(lipswish(x, beta), lipswish_reference(x, beta), atol=0, rtol=0)


def test_block_exact_logdet_and_gradient_match_unfused_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(4)
    g = conv_residual_net(2, 6, coeff=0.9).double()
    for m in g:
        if isinstance(m, LipSwish):
            with torch.no_grad():
                m.rho.add_(0.4 * torch.randn(()))
    block = InvertibleResidualBlock(g, (2, 3, 3), logdet="exact")
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    block(x)  # converge the power iterations
    g.eval()
    _, logdet = block(x)
    params = list(g.parameters())
    got = torch.autograd.grad(logdet.sum(), params, materialize_grads=True)

    monkeypatch.setattr(LipSwish, "forward", lambda self, t: lipswish_reference(t, self.beta))
    expected = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: g(v.unsqueeze(0))[0], xi, create_graph=True)
        expected.append(
            torch.linalg.slogdet(
                torch.eye(xi.numel(), dtype=xi.dtype) + jac.reshape(xi.numel(), -1)
            ).logabsdet
        )
    expected = torch.stack(expected)
    want = torch.autograd.grad(expected.sum(), params, materialize_grads=True)
    torch.testing.assert_close(logdet, expected, atol=1e-10, rtol=0)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
