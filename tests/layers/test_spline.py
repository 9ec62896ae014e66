"""The rational-quadratic spline as a pure function (Durkan et al. 2019), and SplineCoupling."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from invflow.layers.spline import SplineCoupling, bin_knots, knot_derivatives, rational_quadratic_spline

BOUND = 3.0


def random_params(
    n: int, bins: int, seed: int, scale: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def draw(k: int) -> torch.Tensor:
        return scale * torch.randn(n, k, generator=gen, dtype=torch.float64)

    return draw(bins), draw(bins), draw(bins - 1)


def inputs_across_bound(n: int, seed: int) -> torch.Tensor:
    """Inputs inside and outside [-B, B], plus the bound itself."""
    gen = torch.Generator().manual_seed(seed)
    x = 2.5 * BOUND * (2.0 * torch.rand(n, generator=gen, dtype=torch.float64) - 1.0)
    x[:4] = torch.tensor([-BOUND, BOUND, -4 * BOUND, 4 * BOUND], dtype=torch.float64)
    return x


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), bins=st.integers(1, 8))
def test_spline_is_monotone_increasing(seed: int, bins: int) -> None:
    n = 400
    x = torch.linspace(-2 * BOUND, 2 * BOUND, n, dtype=torch.float64)
    w, h, d = random_params(1, bins, seed)
    y, logabsdet = rational_quadratic_spline(
        x, w.expand(n, -1), h.expand(n, -1), d.expand(n, -1), tail_bound=BOUND
    )
    assert torch.all(y[1:] > y[:-1])
    assert torch.all(torch.isfinite(logabsdet))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), bins=st.integers(1, 8))
def test_inverse_of_forward_is_exact_inside_and_outside_the_tails(seed: int, bins: int) -> None:
    n = 200
    x = inputs_across_bound(n, seed)
    w, h, d = random_params(n, bins, seed)
    y, logabsdet = rational_quadratic_spline(x, w, h, d, tail_bound=BOUND)
    x_rec, inv_logabsdet = rational_quadratic_spline(y, w, h, d, inverse=True, tail_bound=BOUND)
    torch.testing.assert_close(x_rec, x, atol=1e-9, rtol=0)
    torch.testing.assert_close(inv_logabsdet, -logabsdet, atol=1e-9, rtol=0)
    outside = x.abs() > BOUND
    assert torch.equal(y[outside], x[outside])
    assert torch.all(logabsdet[outside] == 0)


@pytest.mark.parametrize("inverse", [False, True])
def test_logabsdet_matches_autograd_derivative(inverse: bool) -> None:
    n, bins = 300, 6
    x = inputs_across_bound(n, seed=1).requires_grad_(True)
    w, h, d = random_params(n, bins, seed=2)
    y, logabsdet = rational_quadratic_spline(x, w, h, d, inverse=inverse, tail_bound=BOUND)
    (derivative,) = torch.autograd.grad(y.sum(), x)  # elementwise map: dy_i/dx_i
    torch.testing.assert_close(logabsdet.detach(), derivative.log(), atol=1e-10, rtol=0)


def test_identity_at_zero_parameters() -> None:
    n, bins = 100, 4
    x = inputs_across_bound(n, seed=3)
    zeros = torch.zeros(n, bins, dtype=torch.float64)
    for inverse in (False, True):
        y, logabsdet = rational_quadratic_spline(
            x, zeros, zeros, zeros[:, :-1], inverse=inverse, tail_bound=BOUND
        )
        torch.testing.assert_close(y, x, atol=1e-12, rtol=0)
        torch.testing.assert_close(logabsdet, torch.zeros_like(x), atol=1e-12, rtol=0)


def test_value_and_derivative_are_continuous_at_knots_and_tail_bound() -> None:
    bins, eps = 5, 1e-11
    w, h, d = random_params(1, bins, seed=4)
    knots = bin_knots(w, BOUND, 1e-3)[0]  # includes ±B
    x = torch.cat([knots - eps, knots + eps])
    n = x.shape[0]
    y, logabsdet = rational_quadratic_spline(
        x, w.expand(n, -1), h.expand(n, -1), d.expand(n, -1), tail_bound=BOUND
    )
    below, above = y.chunk(2)
    torch.testing.assert_close(above - below, torch.zeros_like(below), atol=1e-9, rtol=0)
    ld_below, ld_above = logabsdet.chunk(2)  # C¹: the derivative has no jump either
    torch.testing.assert_close(ld_above, ld_below, atol=1e-6, rtol=0)
    # The knots are mapped onto the height knots, the ends onto ±B with derivative 1.
    y_knots = bin_knots(h, BOUND, 1e-3)[0]
    y_at, ld_at = rational_quadratic_spline(knots, w.expand(bins + 1, -1), h.expand(bins + 1, -1),
                                            d.expand(bins + 1, -1), tail_bound=BOUND)
    torch.testing.assert_close(y_at, y_knots, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld_at[[0, -1]], torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("min_size", [1e-3, 0.05, 0.2])
def test_minimum_bin_sizes_and_derivative_are_respected(min_size: float) -> None:
    bins = 4
    extreme = torch.tensor([[60.0, -60.0, -60.0, -60.0], [-60.0, -60.0, -60.0, 60.0]], dtype=torch.float64)
    sizes = bin_knots(extreme, BOUND, min_size).diff(dim=-1)
    assert torch.all(sizes >= 2 * BOUND * min_size * (1 - 1e-9))
    torch.testing.assert_close(sizes.sum(-1), torch.full((2,), 2 * BOUND, dtype=torch.float64))
    derivs = knot_derivatives(torch.full((2, bins - 1), -200.0, dtype=torch.float64), min_size)
    assert torch.all(derivs >= min_size)
    assert torch.all(derivs[:, [0, -1]] == 1.0)


def test_extreme_parameters_stay_finite_and_invertible() -> None:
    n, bins = 200, 4
    x = inputs_across_bound(n, seed=5)
    w, h, d = random_params(n, bins, seed=6, scale=15.0)
    y, logabsdet = rational_quadratic_spline(x, w, h, d, tail_bound=BOUND)
    x_rec, _ = rational_quadratic_spline(y, w, h, d, inverse=True, tail_bound=BOUND)
    assert torch.all(torch.isfinite(y)) and torch.all(torch.isfinite(logabsdet))
    torch.testing.assert_close(x_rec, x, atol=1e-7, rtol=0)


def test_bad_parameter_shapes_and_sizes_raise_value_error() -> None:
    x = torch.zeros(5, dtype=torch.float64)
    w = torch.zeros(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="unnormalized_derivatives"):
        rational_quadratic_spline(x, w, w, w)  # needs K - 1 = 3 derivatives
    with pytest.raises(ValueError, match="unnormalized_heights"):
        rational_quadratic_spline(x, w, w[:4], w[:, :3])
    with pytest.raises(ValueError, match="minimum bin size"):
        rational_quadratic_spline(x, w, w, w[:, :3], min_bin_width=0.3)
    with pytest.raises(ValueError, match="min_derivative"):
        rational_quadratic_spline(x, w, w, w[:, :3], min_derivative=1.0)
    with pytest.raises(ValueError, match="bins"):
        SplineCoupling((4, 6, 10), hidden=8, bins=0)


@pytest.mark.parametrize("shape", [(4, 6, 10), (3, 5, 4), (5,)])
def test_spline_coupling_starts_at_identity(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    layer = SplineCoupling(shape, hidden=8, bins=4).double()
    assert layer.params_per_dim == 11
    x = 2.0 * torch.randn(3, *shape, dtype=torch.float64)
    z, logdet = layer(x)
    torch.testing.assert_close(z, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(logdet, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_spline_coupling_trains_in_float32() -> None:
    torch.manual_seed(0)
    layer = SplineCoupling((4, 6, 10), hidden=8, bins=4)
    with torch.no_grad():
        layer.net[-1].weight.normal_(0.0, 0.1)
    x = torch.randn(2, 4, 6, 10)
    z, logdet = layer(x)
    assert z.dtype == logdet.dtype == torch.float32
    (0.5 * z.square().sum() - logdet.sum()).backward()
    grads = [p.grad for p in layer.parameters()]
    assert all(g is not None and torch.all(torch.isfinite(g)) for g in grads)
    assert layer.net[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(layer.inverse(z)[0], x, atol=1e-5, rtol=0)
