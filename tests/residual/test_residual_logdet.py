"""Log-det estimators: exact vs brute force, the power series itself, Russian roulette, and the
unbiasedness of the ``unbiased`` value and of the Neumann gradient (float64, fixed seeds)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import special, stats
from torch import Tensor

from invflow.residual import InvertibleResidualBlock, mlp_residual_net
from invflow.residual.logdet import (
    neumann_logdet,
    power_series_logdet,
    roulette_survival,
    roulette_weights,
    sample_roulette_length,
)

DRAWS = 300  # independent forward passes per statistical test
REPLICAS = 128  # Hutchinson probes per draw (the batch holds copies of the point)
SEED = 1234


def make_g(seed: int = 0, device: torch.device | str = "cpu") -> torch.nn.Module:
    """A 2D residual net, Lip(g) <= 0.95^2, with its normalisation active (weights blown up) and
    hidden units biased into LipSwish's near-linear range, so J is far from 0 (|J| ~ 0.35) and the
    series tail matters: a 2-term truncation is rejected by the 3-SE tests below (~5 SE off)."""
    torch.manual_seed(seed)
    g = mlp_residual_net(2, 16, n_hidden=1, coeff=0.95).double()
    with torch.no_grad():
        g[0].weight.mul_(4.0)
        g[0].bias.fill_(2.5)
        g[2].weight.mul_(4.0)
    g = g.to(device)
    g(torch.zeros(1, 2, dtype=torch.float64, device=device))  # converge the power iterations
    return g.eval()


def brute_force_logdet(g: torch.nn.Module, x: Tensor) -> Tensor:
    """``log|det(I + J_g(x))|`` of one point from ``torch.autograd.functional.jacobian`` (differentiable)."""
    jac = torch.autograd.functional.jacobian(lambda v: g(v.unsqueeze(0))[0], x, create_graph=True)
    return torch.linalg.slogdet(torch.eye(x.numel(), dtype=x.dtype, device=x.device) + jac).logabsdet


def _graph(g: torch.nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().requires_grad_(True)
    return g(x), x


@pytest.mark.device
def test_exact_block_logdet_and_its_gradient_match_brute_force(device: torch.device) -> None:
    g = make_g(device=device)
    block = InvertibleResidualBlock(g, (2,), logdet="exact")
    x = torch.randn(4, 2, dtype=torch.float64).to(device)
    _, logdet = block(x)
    expected = torch.stack([brute_force_logdet(g, xi) for xi in x])
    torch.testing.assert_close(logdet, expected, atol=1e-8, rtol=0)
    params = list(g.parameters())
    got = torch.autograd.grad(logdet.sum(), params, materialize_grads=True)
    want = torch.autograd.grad(expected.sum(), params, materialize_grads=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=0)


def test_power_series_with_every_basis_probe_is_the_exact_log_det() -> None:
    """Summing the estimator over the basis vectors gives the trace: the truncated series of
    eq. (6) itself, which for 200 terms and Lip(g) <= 0.9 is the log-det to 1e-8."""
    g = make_g()
    x = torch.randn(3, 2, dtype=torch.float64)
    gx, xr = _graph(g, x)
    weights = [1.0] * 200
    basis = [torch.zeros_like(x).index_fill_(1, torch.tensor([i]), 1.0) for i in range(2)]
    series = sum(power_series_logdet(gx, xr, e, weights, create_graph=False) for e in basis)
    neumann = sum(neumann_logdet(gx, xr, e, weights)[0] for e in basis)
    expected = torch.stack([brute_force_logdet(g, xi) for xi in x]).detach()
    torch.testing.assert_close(series, expected, atol=1e-8, rtol=0)
    torch.testing.assert_close(neumann, expected, atol=1e-8, rtol=0)


@pytest.mark.parametrize(("n_dist", "param"), [("geometric", 0.5), ("poisson", 2.0)])
def test_roulette_survival_matches_draws(n_dist: str, param: float) -> None:
    torch.manual_seed(SEED)
    draws = torch.tensor([sample_roulette_length(n_dist, param) for _ in range(20000)])
    for m in range(5):
        empirical = float((draws >= m).double().mean())
        assert empirical == pytest.approx(roulette_survival(n_dist, param, m), abs=0.015)
    assert roulette_survival("poisson", 2.0, 1) == pytest.approx(1 - torch.exp(torch.tensor(-2.0)).item())


@pytest.mark.parametrize("lam", [0.5, 2.0, 10.0, 100.0])
def test_poisson_tail_is_exact_for_any_rate(lam: float) -> None:
    """``P(N >= k)`` for ``N ~ Poisson(λ)``, k = 0…200, against scipy's Poisson survival
    function (``P(N >= k) = sf(k - 1)``), an independent float64 reference, to 1e-12 relative
    (or 1e-300 absolute where the tail underflows)."""
    for k in range(0, 201):
        want = 1.0 if k == 0 else float(stats.poisson.sf(k - 1, lam))
        assert roulette_survival("poisson", lam, k) == pytest.approx(want, rel=1e-12, abs=1e-300), k
    # the old 80-term sum gave P(N >= 1) ~ 0.02 at λ = 100
    assert roulette_survival("poisson", 100.0, 1) == pytest.approx(1.0, abs=1e-40)
    assert roulette_survival("poisson", lam, 5) == pytest.approx(float(special.gammainc(5, lam)), rel=1e-14)


@pytest.mark.parametrize(
    ("n_dist", "param"),
    [
        ("poisson", 0.0),
        ("poisson", -1.0),
        ("poisson", float("inf")),
        ("poisson", float("nan")),
        ("geometric", 0.0),
        ("geometric", 1.5),
    ],
)
def test_roulette_refuses_improper_parameters(n_dist: str, param: float) -> None:
    with pytest.raises(ValueError, match="n_dist_param"):
        roulette_survival(n_dist, param, 1)
    with pytest.raises(ValueError, match="n_dist_param"):
        InvertibleResidualBlock(torch.nn.Identity(), (2,), n_dist=n_dist, n_dist_param=param)


ROULETTE_CASES = [
    (d, p, e)
    for d, p in [("geometric", 0.5), ("geometric", 0.2), ("poisson", 2.0), ("poisson", 10.0)]
    for e in (0, 2)
]


def _pmf(n_dist: str, param: float, n: np.ndarray) -> np.ndarray:
    return stats.geom.pmf(n + 1, param) if n_dist == "geometric" else stats.poisson.pmf(n, param)


@pytest.mark.parametrize(("n_dist", "param", "n_exact"), ROULETTE_CASES)
def test_roulette_weights_give_the_series_sum_in_expectation(n_dist: str, param: float, n_exact: int) -> None:
    """``E_N[Σ_{k<=n_exact+N} c_k a_k] = Σ_k a_k`` for ``a_k = (-1)^{k+1} r^k / k`` (sum log(1+r)),
    r = 0.9: the expectation computed exactly over N's pmf (N < 400, remaining mass < 1e-15)."""
    r = 0.9
    k = np.arange(1, 800)
    terms = (-1.0) ** (k + 1) * r ** k / k
    n = np.arange(0, 400)
    pmf = _pmf(n_dist, param, n)
    assert 1 - pmf.sum() < 1e-12
    expectation = 0.0
    for ni, pi in zip(n, pmf):
        if pi < 1e-300:
            continue
        w = np.asarray(roulette_weights(n_exact, int(ni), n_dist, param))
        expectation += pi * float(np.dot(w, terms[: len(w)]))
    assert expectation == pytest.approx(np.log1p(r), abs=1e-10)


@pytest.mark.parametrize(("n_dist", "param", "n_exact"), ROULETTE_CASES)
def test_roulette_weights_unbiased_with_sampled_lengths(n_dist: str, param: float, n_exact: int) -> None:
    """The same with N drawn by ``sample_roulette_length`` (20000 draws, seed SEED) on a series
    with 8 nonzero terms ``a_k = (-1)^{k+1} 0.9^k / k`` (so the estimator's variance is finite:
    for an infinite geometric series it need not be): the mean is within 4 standard errors of
    the series sum."""
    r, n_terms = 0.9, 8
    target = sum((-1) ** (k + 1) * r ** k / k for k in range(1, n_terms + 1))
    torch.manual_seed(SEED)
    values = []
    for _ in range(20000):
        w = roulette_weights(n_exact, sample_roulette_length(n_dist, param), n_dist, param)[:n_terms]
        values.append(sum(c * (-1) ** (k + 1) * r ** k / k for k, c in enumerate(w, start=1)))
    arr = np.asarray(values)
    se = arr.std(ddof=1) / np.sqrt(arr.size)
    assert se > 0 or n_exact >= n_terms
    assert abs(arr.mean() - target) <= 4 * se, (arr.mean(), target, se)


def _draw_stats(samples: Tensor) -> tuple[Tensor, Tensor]:
    return samples.mean(dim=0), samples.std(dim=0) / samples.shape[0] ** 0.5


COMPILED = pytest.mark.parametrize("compiled", [None, "inductor"], ids=["eager", "compiled"])


@pytest.mark.parametrize(
    ("n_dist", "hutchinson", "n_exact_terms"), [("geometric", "gaussian", 1), ("poisson", "rademacher", 2)]
)
@COMPILED
@pytest.mark.device
def test_unbiased_estimate_mean_matches_exact(
    n_dist: str, hutchinson: str, n_exact_terms: int, compiled: str | None, device: torch.device
) -> None:
    """Over DRAWS forward passes (seed SEED), the mean estimate at two points is within 3 SE, on
    the eager and on the compiled series (``compile_series``)."""
    g = make_g(device=device)
    points = torch.tensor([[0.3, -1.2], [1.5, 0.7]], dtype=torch.float64, device=device)
    exact = torch.stack([brute_force_logdet(g, p) for p in points]).detach()
    block = InvertibleResidualBlock(
        g, (2,), n_dist=n_dist, n_exact_terms=n_exact_terms, hutchinson=hutchinson
    )
    block.compile_series(compiled)
    x = points.repeat_interleave(REPLICAS, dim=0)
    torch.manual_seed(SEED)
    with torch.no_grad():
        samples = torch.stack([block(x)[1].reshape(2, REPLICAS).mean(dim=1) for _ in range(DRAWS)])
    mean, se = _draw_stats(samples)
    assert torch.all((mean - exact).abs() <= 3 * se), (mean, exact, se)
    assert torch.all(se > 0)


@COMPILED
@pytest.mark.device
def test_neumann_gradient_is_unbiased(compiled: str | None, device: torch.device) -> None:
    """d logdet / d(θ, x) of the Neumann estimator (backward-in-forward), averaged over DRAWS
    passes (seed SEED), matches the brute-force gradient within 3 SE, projected on 3 fixed
    random directions and on each input coordinate; eager and compiled (``compile_series``)."""
    g = make_g(device=device)
    params = list(g.parameters())
    x0 = torch.tensor([0.4, -0.8], dtype=torch.float64, device=device, requires_grad=True)
    exact_grads = torch.autograd.grad(brute_force_logdet(g, x0), params + [x0], materialize_grads=True)
    exact = torch.cat([e.reshape(-1) for e in exact_grads])
    directions = torch.randn(
        3, exact.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    ).to(device)
    block = InvertibleResidualBlock(g, (2,), gradient="neumann", n_dist="geometric", n_exact_terms=1)
    block.compile_series(compiled)
    block.train()
    torch.manual_seed(SEED)
    samples = []
    for _ in range(DRAWS):
        _, logdet = block(x0.expand(REPLICAS, 2))
        grads = torch.autograd.grad(logdet.mean(), params + [x0], materialize_grads=True)
        flat = torch.cat([gr.reshape(-1) for gr in grads])
        samples.append(torch.cat([directions @ flat, flat[-2:]]))
    mean, se = _draw_stats(torch.stack(samples))
    target = torch.cat([directions @ exact, exact[-2:]])
    assert torch.all((mean - target).abs() <= 3 * se), (mean, target, se)


@pytest.mark.parametrize("form", ["derivative", "theorem2"])
@pytest.mark.parametrize(("n_dist", "param", "n_exact"), [("geometric", 0.5, 1), ("poisson", 2.0, 2)])
def test_both_neumann_forms_are_exactly_unbiased(form: str, n_dist: str, param: float, n_exact: int) -> None:
    """The expectation of each Neumann form's gradient (in g's parameters and x), computed exactly:
    summed over N's pmf (N < 60, remaining mass < 1e-12) and over the basis probes (``E[v vᵀ] = I``,
    the estimate is bilinear in v), equals the brute-force gradient of ``log|det(I + J)|``
    to 1e-9 in float64; the two forms differ for a single N (they are not the same estimator)."""
    g = make_g()
    params = list(g.parameters())
    x0 = torch.tensor([[0.4, -0.8]], dtype=torch.float64, requires_grad=True)
    exact = torch.cat([e.reshape(-1) for e in torch.autograd.grad(
        brute_force_logdet(g, x0[0]), params + [x0], materialize_grads=True)])
    gx = g(x0)
    basis = torch.eye(2, dtype=torch.float64).reshape(2, 1, 2)

    def gradient(n: int, which: str) -> Tensor:
        weights = roulette_weights(n_exact, n, n_dist, param)
        surrogate = sum(neumann_logdet(gx, x0, e, weights, which)[1].sum() for e in basis)
        grads = torch.autograd.grad(surrogate, params + [x0], retain_graph=True, materialize_grads=True)
        return torch.cat([gr.reshape(-1) for gr in grads])

    n = np.arange(60)
    pmf = _pmf(n_dist, param, n)
    assert 1 - pmf.sum() < 1e-12
    expectation = sum(float(p) * gradient(int(k), form) for k, p in zip(n, pmf))
    torch.testing.assert_close(expectation, exact, atol=1e-9, rtol=0)
    assert (gradient(1, "derivative") - gradient(1, "theorem2")).abs().max() > 1e-3


def test_neumann_form_is_checked() -> None:
    with pytest.raises(ValueError, match="neumann_form must be one of"):
        InvertibleResidualBlock(make_g(), (2,), neumann_form="paper")


def _estimate_and_grads(block: InvertibleResidualBlock, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    torch.manual_seed(SEED)
    x = x.clone().requires_grad_(True)
    y, logdet = block(x)
    grads = torch.autograd.grad(logdet.mean() + y.sum(), [x] + list(block.g.parameters()))
    return logdet.detach(), list(grads)


def test_all_gradient_modes_return_the_same_estimate_value() -> None:
    g = make_g()
    x = torch.randn(5, 2, dtype=torch.float64)
    values = {}
    for mode, bif in [("backprop", False), ("neumann", False), ("neumann", True)]:
        block = InvertibleResidualBlock(g, (2,), gradient=mode, backward_in_forward=bif, n_samples=2).train()
        values[(mode, bif)], _ = _estimate_and_grads(block, x)
        torch.testing.assert_close(block.last_logdet_stats()["estimate"], values[(mode, bif)])
    for v in values.values():
        torch.testing.assert_close(v, values[("backprop", False)], atol=1e-12, rtol=0)


def test_backward_in_forward_gives_the_same_gradient() -> None:
    g = make_g()
    x = torch.randn(5, 2, dtype=torch.float64)
    late = InvertibleResidualBlock(g, (2,), gradient="neumann", backward_in_forward=False).train()
    early = InvertibleResidualBlock(g, (2,), gradient="neumann", backward_in_forward=True).train()
    _, grads_late = _estimate_and_grads(late, x)
    _, grads_early = _estimate_and_grads(early, x)
    for a, b in zip(grads_late, grads_early):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_backward_in_forward_refuses_unequal_sample_weights() -> None:
    g = make_g()
    block = InvertibleResidualBlock(g, (2,), gradient="neumann").train()
    _, logdet = block(torch.randn(3, 2, dtype=torch.float64))
    weights = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    with pytest.raises(RuntimeError, match="backward_in_forward=False"):
        (weights * logdet).sum().backward()


def test_eval_uses_more_terms_and_reports_them() -> None:
    g = make_g()
    block = InvertibleResidualBlock(g, (2,), n_exact_terms=2, eval_terms=12).eval()
    with torch.no_grad():
        _, logdet = block(torch.randn(3, 2, dtype=torch.float64))
    stats = block.last_logdet_stats()
    assert stats["n_terms"] >= 12
    assert not logdet.requires_grad
    assert torch.isnan(stats["probe_var"]).all()
