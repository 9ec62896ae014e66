"""Conditional residual blocks ``y = x + g(x, c)``: the context shifts hidden pre-activations only, so
``Lip_x g(·, c) < 1`` for every ``c``, the fixed-point inverse converges for any context, and the
Russian-roulette estimate and its Neumann gradient (in the parameters, ``x`` and a learned ``c``)
stay unbiased (float64, fixed seeds)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from invflow.core.context import ContextBias
from invflow.residual import InvertibleResidualBlock, conv_residual_net, mlp_residual_net

K = 4
SEED = 4321
DRAWS, REPLICAS = 300, 128


def _blow_up_context_weights(g: torch.nn.Module, scale: float, seed: int) -> None:
    """Large context biases, so hidden states move far with the context."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ContextBias):
                m.linear.weight.copy_(
                    scale * torch.randn(m.linear.weight.shape, generator=gen, dtype=torch.float64)
                )
                m.linear.bias.copy_(
                    scale * torch.randn(m.linear.bias.shape, generator=gen, dtype=torch.float64)
                )


def _jacobian(g: torch.nn.Module, x: Tensor, c: Tensor) -> Tensor:
    jac = torch.autograd.functional.jacobian(lambda v: g(v.unsqueeze(0), context=c[None])[0], x)
    return jac.reshape(x.numel(), x.numel())


@pytest.mark.parametrize(("kind", "coeff"), [("conv", 0.9), ("mlp", 0.97)])
def test_lipschitz_in_x_is_below_coeff_for_every_context(kind: str, coeff: float) -> None:
    torch.manual_seed(0)
    if kind == "conv":
        g, shape = conv_residual_net(2, 8, coeff=coeff, context_features=K).double(), (2, 4, 4)
    else:
        g, shape = mlp_residual_net(3, 16, coeff=coeff, context_features=K).double(), (3,)
    g(torch.zeros(1, *shape, dtype=torch.float64), context=torch.zeros(1, K, dtype=torch.float64))
    g.eval()  # power iterations converged, normalised weights fixed
    _blow_up_context_weights(g, 3.0, seed=1)
    gen = torch.Generator().manual_seed(2)
    norms = []
    for _ in range(20):
        x = 2 * torch.randn(shape, generator=gen, dtype=torch.float64)
        c = 3 * torch.randn(K, generator=gen, dtype=torch.float64)
        norms.append(float(torch.linalg.matrix_norm(_jacobian(g, x, c), ord=2)))
    # every map has induced 2-norm <= coeff and LipSwish is 1-Lipschitz: ||J_x g|| <= coeff^maps
    maps = 3 if kind == "conv" else 4
    assert max(norms) <= coeff**maps + 1e-9, norms
    assert max(norms) - min(norms) > 1e-3  # the contexts really moved the Jacobian


def test_fixed_point_inverse_converges_for_random_contexts() -> None:
    torch.manual_seed(0)
    g = conv_residual_net(3, 16, coeff=0.98, context_features=K).double()
    block = InvertibleResidualBlock(g, (3, 4, 4), logdet="exact")
    block(torch.zeros(2, 3, 4, 4, dtype=torch.float64), torch.zeros(2, K, dtype=torch.float64))
    block.eval()
    _blow_up_context_weights(g, 5.0, seed=3)
    gen = torch.Generator().manual_seed(4)
    for _ in range(5):
        x = torch.randn(6, 3, 4, 4, generator=gen, dtype=torch.float64)
        c = 5 * torch.randn(6, K, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            y, _ = block(x, c)
            x_back = block.inverse_without_logdet(y, c)
        assert block.last_inverse_iterations < block.inverse_max_iter
        torch.testing.assert_close(x_back, x, atol=1e-10, rtol=0)


def _make_block_net() -> torch.nn.Module:
    """A 2D conditional net with its normalisation active and the hidden units in LipSwish's
    near-linear range (as tests/residual/test_residual_logdet.py's make_g), so the series tail matters."""
    torch.manual_seed(0)
    g = mlp_residual_net(2, 16, n_hidden=1, coeff=0.95, context_features=K).double()
    with torch.no_grad():
        g[0].weight.mul_(4.0)
        g[0].bias.fill_(2.5)
        g[3].weight.mul_(4.0)
    _blow_up_context_weights(g, 0.5, seed=5)
    g(torch.zeros(1, 2, dtype=torch.float64), context=torch.zeros(1, K, dtype=torch.float64))
    return g.eval()


def _brute_force_logdet(g: torch.nn.Module, x: Tensor, c: Tensor) -> Tensor:
    jac = torch.autograd.functional.jacobian(
        lambda v: g(v.unsqueeze(0), context=c[None])[0], x, create_graph=True
    )
    return torch.linalg.slogdet(torch.eye(x.numel(), dtype=x.dtype) + jac).logabsdet


def test_unbiased_estimate_and_neumann_gradient_with_a_learned_context() -> None:
    """Over DRAWS passes (seed SEED): the mean estimate and the mean Neumann gradient in the
    parameters, ``x`` and the context (projected on fixed random directions) are within 3 SE of
    the brute-force values, for two different contexts."""
    g = _make_block_net()
    params = list(g.parameters())
    gen = torch.Generator().manual_seed(6)
    block = InvertibleResidualBlock(g, (2,), gradient="neumann", n_dist="geometric", n_exact_terms=1).train()
    for _ in range(2):
        x0 = torch.randn(2, generator=gen, dtype=torch.float64).requires_grad_(True)
        c0 = torch.randn(K, generator=gen, dtype=torch.float64).requires_grad_(True)
        exact_value = _brute_force_logdet(g, x0, c0)
        exact = torch.cat(
            [
                e.reshape(-1)
                for e in torch.autograd.grad(exact_value, params + [x0, c0], materialize_grads=True)
            ]
        )
        directions = torch.randn(3, exact.numel(), generator=gen, dtype=torch.float64)
        torch.manual_seed(SEED)
        samples = []
        for _ in range(DRAWS):
            x, c = x0.expand(REPLICAS, 2), c0.expand(REPLICAS, K)
            _, logdet = block(x, c)
            grads = torch.autograd.grad(logdet.mean(), params + [x0, c0], materialize_grads=True)
            flat = torch.cat([gr.reshape(-1) for gr in grads])
            samples.append(torch.cat([logdet.detach().mean()[None], directions @ flat, flat[-(2 + K) :]]))
        stacked = torch.stack(samples)
        mean, se = stacked.mean(dim=0), stacked.std(dim=0) / DRAWS**0.5
        target = torch.cat([exact_value.detach()[None], directions @ exact, exact[-(2 + K) :]])
        assert torch.all((mean - target).abs() <= 3 * se), (mean, target, se)
        assert float(exact[-K:].abs().max()) > 1e-3  # the context's gradient is not trivially zero
