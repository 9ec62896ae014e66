"""The implicitly differentiated fixed-point inverse: gradients against central finite differences
and against autograd through the unrolled iteration, for contraction factors 0.5 / 0.9 / 0.98;
memory flat in the number of iterations; partial gradients, no_grad and the backward's warning."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from invflow.residual import (
    conv_residual_net,
    fixed_point_inverse,
    implicit_fixed_point_inverse,
    mlp_residual_net,
)

F64 = torch.float64
FACTORS = (0.5, 0.9, 0.98)
SOLVE_ATOL = 1e-12  # the implicit solves' stopping residual (the float64 default)
# central differences, checked relative to the derivative's size (up to ~100 at c = 0.98): the
# h² truncation and the ~1e-14 round-off of the loss over 2h each stay below 1e-7 here
FD_STEP = 1e-6
FD_RTOL = 1e-6


def unrolled_atol(c: float) -> float:
    """Errors in ``x`` and ``u`` up to ``SOLVE_ATOL / (1 - c)``, amplified again by up to
    ``1 / (1 - c)`` on the way to the gradient; a factor 10 of margin."""
    return 10 * SOLVE_ATOL / (1 - c) ** 2


# LipSwish's slope is at its maximum, 1, at βx ≈ 2.40: the nets below are built to work there
SLOPE_ONE = 2.4


class TanhResidual(nn.Module):
    """``g(x) = c·tanh(Wx + b)`` with ``W = Q diag(±1) Qᵀ`` (``‖W‖₂ = 1``), so ``Lip(g) = c``, and
    near ``x = 0`` (small ``b`` and ``y``) ``J_g ≈ cW`` has eigenvalues ``±c``: the iteration
    contracts at ``c`` itself and ``I + J_g`` is as ill-conditioned as ``c`` allows."""

    def __init__(self, dim: int, c: float, gen: torch.Generator) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=F64))
        signs = torch.tensor([(-1.0) ** i for i in range(dim)], dtype=F64)
        self.weight = nn.Parameter(q @ torch.diag(signs) @ q.t())
        self.bias = nn.Parameter(0.1 * (1 - c) * torch.randn(dim, generator=gen, dtype=F64))
        self.c = c

    def forward(self, x: Tensor) -> Tensor:
        return self.c * torch.tanh(x @ self.weight.t() + self.bias)


def stiff_mlp(c: float, gen: torch.Generator) -> tuple[nn.Module, Tensor]:
    """``mlp_residual_net`` (Linear → LipSwish → Linear, each linear map at norm ``√c``) made to
    contract at nearly ``c``: ``W₂ = −W₁ᵀ`` (so ``J_g ≈ −W̃₁ᵀ D W̃₁`` has an eigenvalue ≈ ``−c``),
    the hidden pre-activations where LipSwish's slope ``D`` is ≈ 1 and ``g(0)`` small. Random
    weights contract at 0.05–0.3 whatever the bound, which would not test the hard cases."""
    net = mlp_residual_net(4, 16, n_hidden=1, coeff=c ** (1 / 2)).to(F64)
    first, act, last = net
    y = 0.1 * (1 - c) * torch.randn(3, 4, generator=gen, dtype=F64)
    with torch.no_grad():
        first.weight.copy_(torch.randn(16, 4, generator=gen, dtype=F64))
        last.weight.copy_(-first.weight.t())
        act.rho.copy_(0.1 * torch.randn((), generator=gen, dtype=F64))
        first.bias.copy_(SLOPE_ONE / act.beta + 0.1 * torch.randn(16, generator=gen, dtype=F64))
        last.bias.zero_()
        net.eval()(y)  # settles the power iterations: eval mode keeps them, g is deterministic
        g0 = 0.1 * (1 - c) * torch.randn(4, generator=gen, dtype=F64)
        last.bias.copy_(g0 - net(torch.zeros(1, 4, dtype=F64))[0])  # g(0) = g0
    return net, y


def stiff_conv(c: float, gen: torch.Generator) -> tuple[nn.Module, Tensor]:
    """``conv_residual_net`` (each conv at norm ``c^(1/3)``) made to contract at nearly ``c`` like
    :func:`stiff_mlp`: 3x3 kernels mostly in their centre tap, the 1x1 conv the identity, the last
    conv minus the adjoint of the first, and every LipSwish input near its slope-1 point (``y``
    there, and the biases set for a constant image)."""
    net = conv_residual_net(2, 4, coeff=c ** (1 / 3)).to(F64)
    act1, conv1, act2, conv2, act3, conv3 = net
    with torch.no_grad():
        for act in (act1, act2, act3):
            act.rho.copy_(0.1 * torch.randn((), generator=gen, dtype=F64))
        kernel = 0.1 * torch.randn(4, 2, 3, 3, generator=gen, dtype=F64)
        kernel[:, :, 1, 1] *= 10
        conv1.weight.copy_(kernel)
        conv2.weight.copy_(torch.eye(4, dtype=F64).reshape(4, 4, 1, 1))
        conv3.weight.copy_(-kernel.transpose(0, 1).flip(2, 3))
        y = SLOPE_ONE / act1.beta + 0.1 * (1 - c) * torch.randn(2, 2, 5, 5, generator=gen, dtype=F64)
        net.eval()(y)  # settles the power iterations: eval mode keeps them, g is deterministic
        h = torch.full((1, 2, 5, 5), float(SLOPE_ONE / act1.beta), dtype=F64)
        for act, conv, target in ((act1, conv1, act2), (act2, conv2, act3), (act3, conv3, None)):
            conv.bias.zero_()
            centre = conv(act(h))[0, :, 2, 2]
            conv.bias.copy_((0.0 if target is None else SLOPE_ONE / target.beta) - centre)
            h = conv(act(h))
    return net, y


def make_case(kind: str, c: float, seed: int) -> tuple[nn.Module, Tensor]:
    """``(g, y)`` with ``Lip(g) ≤ c`` and the iteration contracting at nearly ``c``."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "tanh":
        return TanhResidual(4, c, gen), 0.1 * (1 - c) * torch.randn(3, 4, generator=gen, dtype=F64)
    return (stiff_mlp if kind == "mlp" else stiff_conv)(c, gen)


def unrolled_inverse(g: Callable[[Tensor], Tensor], y: Tensor, n_iter: int) -> Tensor:
    """``x_{k+1} = y − g(x_k)`` from ``x_0 = y``, ``n_iter`` times (autograd through all of it)."""
    x = y
    for _ in range(n_iter):
        x = y - g(x)
    return x


def converged_iterations(g: Callable[[Tensor], Tensor], y: Tensor) -> int:
    """The iterations the residual takes to reach 1e-14: the reference's error (and, up to a factor
    of the iteration count, its derivative's) is then ~1e-14 / (1 - c), far below the solves'."""
    with torch.no_grad():
        return fixed_point_inverse(g, y, atol=1e-14, rtol=0.0, max_iter=100_000)[1]


def loss_of(x: Tensor, weights: Tensor) -> Tensor:
    return (weights * torch.sin(x)).sum()


@pytest.mark.parametrize("kind", ["tanh", "mlp", "conv"])
@pytest.mark.parametrize("c", FACTORS)
def test_gradients_match_unrolled_and_finite_differences(kind: str, c: float) -> None:
    g, y = make_case(kind, c, seed=int(100 * c))
    gen = torch.Generator().manual_seed(1)
    weights = torch.randn(y.shape, generator=gen, dtype=F64)
    tensors = [y, *g.parameters()]
    n_iter = converged_iterations(g, y)

    # a contraction at 0.98 needs ~1100 iterations to the default 1e-12: more than max_iter's 1000
    y_implicit = y.clone().requires_grad_(True)
    x, _ = implicit_fixed_point_inverse(
        g, y_implicit, tensors[1:], atol=SOLVE_ATOL, max_iter=10_000, backward_max_iter=10_000
    )
    implicit = torch.autograd.grad(loss_of(x, weights), [y_implicit, *tensors[1:]])

    y_unrolled = y.clone().requires_grad_(True)
    x_unrolled = unrolled_inverse(g, y_unrolled, n_iter)
    unrolled = torch.autograd.grad(loss_of(x_unrolled, weights), [y_unrolled, *tensors[1:]])
    for a, b in zip(implicit, unrolled):
        torch.testing.assert_close(a, b, atol=unrolled_atol(c), rtol=0)

    # central differences of the loss along one random direction per tensor (y and each parameter)
    for t, grad in zip(tensors, implicit):
        d = torch.randn(t.shape, generator=gen, dtype=F64)
        original = t.detach().clone()
        losses = []
        with torch.no_grad():
            for sign in (1, -1):
                t.copy_(original + sign * FD_STEP * d)
                losses.append(float(loss_of(unrolled_inverse(g, y, n_iter), weights)))
            t.copy_(original)
        exact = float((grad * d).sum())
        assert abs((losses[0] - losses[1]) / (2 * FD_STEP) - exact) <= FD_RTOL * max(1.0, abs(exact))


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_every_parameter_gets_a_finite_gradient(kind: str) -> None:
    g, y = make_case(kind, 0.9, seed=3)
    x, _ = implicit_fixed_point_inverse(g, y.requires_grad_(True), list(g.parameters()))
    x.square().sum().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def saved_bytes(run: Callable[[], None]) -> int:
    """Bytes of every tensor autograd saves while ``run`` runs (forward and backward)."""
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return total


def test_memory_is_flat_in_the_number_of_iterations() -> None:
    g, y = make_case("mlp", 0.9, seed=4)
    params = list(g.parameters())
    calls = 0

    def counted_g(x: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return g(x)

    def implicit(tol: float, iterations: list[int]) -> Callable[[], None]:
        def run() -> None:
            nonlocal calls
            x, n = implicit_fixed_point_inverse(
                counted_g, y.clone().requires_grad_(True), params, atol=tol, backward_atol=tol,
                backward_iterations=iterations,
            )
            iterations.insert(0, n)
            calls = 0
            x.square().sum().backward()
            assert calls == 1  # one graph of g recomputed at x for every backward step

        return run

    loose, tight = [], []
    loose_bytes, tight_bytes = saved_bytes(implicit(1e-3, loose)), saved_bytes(implicit(1e-13, tight))
    assert tight[0] > 3 * loose[0] and tight[1] > 3 * loose[1]  # forward and backward iterations
    assert tight_bytes == loose_bytes

    def unrolled(n_iter: int) -> Callable[[], None]:
        return lambda: unrolled_inverse(g, y.clone().requires_grad_(True), n_iter).square().sum().backward()

    assert saved_bytes(unrolled(tight[0])) > 3 * saved_bytes(unrolled(loose[0]))


@pytest.mark.parametrize("y_grad, params_grad", [(True, False), (False, True)])
def test_gradient_for_y_or_parameters_alone(y_grad: bool, params_grad: bool) -> None:
    g, y = make_case("tanh", 0.9, seed=5)
    params = list(g.parameters())
    y_ref = y.clone().requires_grad_(True)
    x_ref = unrolled_inverse(g, y_ref, converged_iterations(g, y))
    expected = torch.autograd.grad(x_ref.sum(), [y_ref, *params])

    g.requires_grad_(params_grad)
    y.requires_grad_(y_grad)
    x, _ = implicit_fixed_point_inverse(g, y, params)
    x.sum().backward()
    for t, wanted, grad in zip([y, *params], [y_grad] + [params_grad] * len(params), expected):
        assert (t.grad is not None) == wanted
        if wanted:
            torch.testing.assert_close(t.grad, grad, atol=unrolled_atol(0.9), rtol=0)


def test_no_grad_is_the_plain_inverse() -> None:
    g, y = make_case("tanh", 0.9, seed=6)
    y.requires_grad_(True)
    with torch.no_grad():
        x, n = implicit_fixed_point_inverse(g, y, list(g.parameters()))
        expected, n_expected = fixed_point_inverse(g, y)
    assert x.grad_fn is None and not x.requires_grad
    assert n == n_expected
    torch.testing.assert_close(x, expected, atol=0, rtol=0)


def test_backward_warns_when_not_converged_and_records_iterations() -> None:
    g, y = make_case("tanh", 0.9, seed=7)
    iterations: list[int] = []
    x, _ = implicit_fixed_point_inverse(
        g, y.requires_grad_(True), list(g.parameters()), backward_max_iter=2, backward_iterations=iterations
    )
    with pytest.warns(RuntimeWarning, match=r"backward.*did not converge in 2 iterations: max residual"):
        x.sum().backward()
    assert iterations == [2]


def test_double_backward_raises() -> None:
    g, y = make_case("tanh", 0.5, seed=8)
    x, _ = implicit_fixed_point_inverse(g, y.requires_grad_(True), list(g.parameters()))
    (grad,) = torch.autograd.grad(x.square().sum(), y, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()
