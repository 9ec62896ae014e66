"""Lipschitz layers: the true induced norm of the normalised operator, computed independently
(explicit operator matrix: SVD for 2->2, max abs row/column sums for ∞->∞ / 1->1, brute force
over the vertices of the unit ball otherwise), is at most ``coeff + 1e-3``."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor

from invflow.core.hooks import refresh_weight_derived_state
from invflow.residual import LearnedNormOrder, SpectralNormConv2d, SpectralNormLinear

COEFF = 0.9
TOL = 1e-3


def explicit_matrix(layer: torch.nn.Module, in_shape: tuple[int, ...]) -> Tensor:
    """The matrix of the layer's normalised linear map (bias removed), by applying it to a basis."""
    dim = math.prod(in_shape)
    basis = torch.eye(dim, dtype=torch.float64).reshape(dim, *in_shape)
    with torch.no_grad():
        out = layer(basis) - layer(torch.zeros(1, *in_shape, dtype=torch.float64))
    return out.reshape(dim, -1).t()


def vertex_norm(a: Tensor, p: float, q: float) -> float:
    """``max ||A s||_q`` over the vertices of the unit p-ball (p = 1: ±e_j; p = ∞: sign vectors)."""
    n = a.shape[1]
    if p == 1:
        vertices = torch.eye(n, dtype=a.dtype)
    else:
        vertices = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=n)), dtype=a.dtype)
    return float(torch.linalg.vector_norm(vertices @ a.t(), ord=q, dim=1).max())


def _scaled(layer: torch.nn.Module, factor: float = 5.0) -> torch.nn.Module:
    """Blow the raw weight up so that the normalisation is active (raw norm >> coeff)."""
    with torch.no_grad():
        layer.weight.mul_(factor)
    return layer.double()


@pytest.mark.parametrize("kernel", [1, 3])
def test_conv_operator_spectral_norm_matches_svd(kernel: int) -> None:
    torch.manual_seed(0)
    layer = _scaled(SpectralNormConv2d(2, 3, kernel, coeff=COEFF))
    shape = (2, 5, 5)
    layer(torch.zeros(1, *shape, dtype=torch.float64))  # sizes u and converges
    sigma = float(torch.linalg.matrix_norm(explicit_matrix(layer, shape), ord=2))
    assert sigma <= COEFF + TOL
    assert sigma >= COEFF - TOL  # the operator norm was really reached, not over-estimated


def test_conv_operator_norm_depends_on_input_size_not_kernel_reshape() -> None:
    torch.manual_seed(1)
    layer = _scaled(SpectralNormConv2d(1, 1, 3, coeff=COEFF))
    layer.train()
    for size in (3, 6):
        layer(torch.zeros(1, 1, size, size, dtype=torch.float64))
        assert layer.u.shape == (1, 1, size, size)
        sigma = float(torch.linalg.matrix_norm(explicit_matrix(layer, (1, size, size)), ord=2))
        assert COEFF - TOL <= sigma <= COEFF + TOL


@pytest.mark.parametrize("p", [1.0, math.inf])
def test_conv_operator_l1_and_linf_norms(p: float) -> None:
    torch.manual_seed(2)
    layer = _scaled(SpectralNormConv2d(1, 2, 3, coeff=COEFF, domain=p, codomain=p))
    shape = (1, 3, 3)  # 9 inputs: 512 vertices of the ∞-ball
    a = explicit_matrix(layer, shape)
    sums = a.abs().sum(dim=1) if math.isinf(p) else a.abs().sum(dim=0)
    true = vertex_norm(a, p, p)
    assert true == pytest.approx(float(sums.max()))
    assert COEFF - TOL <= true <= COEFF + TOL


@pytest.mark.parametrize(
    ("p", "q"), [(2.0, 2.0), (1.0, 1.0), (math.inf, math.inf), (1.0, 2.0), (1.0, math.inf)]
)
def test_linear_induced_norm_brute_force(p: float, q: float) -> None:
    torch.manual_seed(3)
    layer = _scaled(SpectralNormLinear(7, 5, coeff=COEFF, domain=p, codomain=q))
    a = explicit_matrix(layer, (7,))
    true = float(torch.linalg.matrix_norm(a, ord=2)) if p == q == 2 else vertex_norm(a, p, q)
    assert COEFF - TOL <= true <= COEFF + TOL


@pytest.mark.parametrize("p", [1.5, 2.0, 3.0])
def test_linear_norm_into_linf_is_the_largest_dual_row_norm(p: float) -> None:
    torch.manual_seed(4)
    layer = _scaled(SpectralNormLinear(6, 4, coeff=COEFF, domain=p, codomain=math.inf))
    a = explicit_matrix(layer, (6,))
    # ||A||_{p->∞} = max_i max_{||x||_p<=1} |a_i·x| = max_i ||a_i||_{p*} (Hölder)
    true = float(torch.linalg.vector_norm(a, ord=p / (p - 1), dim=1).max())
    assert COEFF - TOL <= true <= COEFF + TOL


def test_linf_domain_needs_linf_codomain() -> None:
    with pytest.raises(ValueError, match="codomain"):
        SpectralNormLinear(3, 3, domain=math.inf, codomain=2.0)


def test_linf_brute_force_agrees_with_row_sums() -> None:
    torch.manual_seed(4)
    a = torch.randn(4, 6, dtype=torch.float64)
    assert vertex_norm(a, math.inf, math.inf) == pytest.approx(float(a.abs().sum(dim=1).max()))
    assert vertex_norm(a, 1.0, 1.0) == pytest.approx(float(a.abs().sum(dim=0).max()))


def test_learned_orders_start_at_two_and_stay_in_range() -> None:
    order = LearnedNormOrder(2.0)
    assert float(order().detach()) == 2.0
    with torch.no_grad():
        order.s.fill_(50.0)
    assert 1.5 < float(order().detach()) <= 2.5
    torch.manual_seed(5)
    layer = _scaled(
        SpectralNormLinear(6, 4, coeff=COEFF, domain=LearnedNormOrder(), codomain=LearnedNormOrder())
    )
    sigma = float(torch.linalg.matrix_norm(explicit_matrix(layer, (6,)), ord=2))
    assert COEFF - TOL <= sigma <= COEFF + TOL
    y = layer(torch.randn(3, 6, dtype=torch.float64)).sum()
    grads = torch.autograd.grad(y, [layer.domain.s, layer.codomain.s])
    assert all(torch.isfinite(g) for g in grads)


def test_adaptive_iteration_converges_and_warm_start_is_cheap() -> None:
    torch.manual_seed(6)
    layer = _scaled(SpectralNormConv2d(2, 4, 3, coeff=COEFF, tol=1e-6, max_iterations=500))
    steps = layer.update_power_iteration(torch.zeros(1, 2, 6, 6, dtype=torch.float64))
    assert 1 < steps < 500
    assert layer.update_power_iteration() <= 2


def test_eval_forward_does_not_update_and_train_forward_refreshes_stale_vectors() -> None:
    torch.manual_seed(7)
    layer = _scaled(SpectralNormLinear(4, 4, coeff=COEFF))
    x = torch.randn(2, 4, dtype=torch.float64)
    layer(x)
    u0 = layer.u.clone()
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))
    layer.eval()
    layer(x)
    torch.testing.assert_close(layer.u, u0, rtol=0, atol=0)
    layer.train()
    layer(x)
    assert not torch.equal(layer.u, u0)
    refresh_weight_derived_state(layer)
    u1 = layer.u.clone()
    layer(x)  # nothing changed since the refinement: no further iterations
    torch.testing.assert_close(layer.u, u1, rtol=0, atol=0)


def test_power_iteration_vectors_are_saved_and_restored() -> None:
    torch.manual_seed(8)
    layer = _scaled(SpectralNormConv2d(2, 3, 3, coeff=COEFF))
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    y = layer(x)
    state = layer.state_dict()
    assert state["u"].shape == (1, 2, 5, 5)
    fresh = SpectralNormConv2d(2, 3, 3, coeff=COEFF).double().eval()
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(x), y)
