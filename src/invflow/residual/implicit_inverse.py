"""The fixed-point inverse of ``y = x + g(x)``, ``Lip(g) < 1``, differentiated implicitly.

``x(y, θ)`` solves ``x + g(x; θ) = y``. The implicit function theorem gives
``∂x/∂y = (I + J_g(x))⁻¹`` and ``∂x/∂θ = −(I + J_g(x))⁻¹ ∂g/∂θ``, so for ``v = ∂L/∂x``

    ``∂L/∂y = u``,   ``∂L/∂θ = −uᵀ ∂g/∂θ``,   where   ``(I + J_g(x))ᵀ u = v``

(the backward of deep equilibrium models, Bai et al. 2019, Theorem 1, here for the invertible
residual block of Behrmann et al. 2019). ``u`` is found by the fixed-point iteration
``u ← v − J_g(x)ᵀ u`` from ``u = v``: if ``Lip(g) = L < 1`` in a norm ``‖·‖_p`` then
``‖J_gᵀ‖_q = ‖J_g‖_p ≤ L`` in the dual norm (``1/p + 1/q = 1``), so it contracts at the forward's
rate. Every step is one vector–Jacobian product through *one* graph of ``g`` recomputed at ``x``,
so the backward's memory does not grow with the number of iterations, unlike backpropagation
through the unrolled iteration ``x_{k+1} = y − g(x_k)``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from invflow.residual.fixed_point import fixed_point_inverse


@dataclass(frozen=True)
class _Solves:
    """The settings of both fixed-point solves and where to record the backward's count."""

    atol: float | None
    rtol: float | None
    max_iter: int
    backward_atol: float | None
    backward_rtol: float | None
    backward_max_iter: int
    where: str
    backward_iterations: list[int] | None


class _ImplicitInverse(torch.autograd.Function):
    """Inputs ``(g, solves, y, *params)``, outputs ``(x, forward iterations)``."""

    @staticmethod
    def forward(ctx, g, solves: _Solves, y: Tensor, *params: Tensor):  # type: ignore[override]
        x, iterations = fixed_point_inverse(
            g, y.detach(), solves.atol, solves.rtol, solves.max_iter, solves.where
        )
        ctx.g, ctx.solves = g, solves
        ctx.save_for_backward(x, *params)
        return x, iterations

    @staticmethod
    @once_differentiable  # the adjoint solve is not differentiable: double backward raises
    def backward(ctx, v: Tensor, _iterations: None):  # type: ignore[override]
        x, *params = ctx.saved_tensors
        solves: _Solves = ctx.solves
        need_y, need_params = ctx.needs_input_grad[2], ctx.needs_input_grad[3:]
        wanted = [p for p, need in zip(params, need_params) if need]
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            gx = ctx.g(xr)

        def jacobian_t(u: Tensor) -> Tensor:  # J_g(x)ᵀ u, through the one graph kept for all steps
            return torch.autograd.grad(
                gx, xr, u, retain_graph=True, allow_unused=True, materialize_grads=True
            )[0]

        u, iterations = fixed_point_inverse(
            jacobian_t, v, solves.backward_atol, solves.backward_rtol, solves.backward_max_iter,
            where=f"{solves.where} backward, (I + J_g(x))^T u = v",
        )
        if solves.backward_iterations is not None:
            solves.backward_iterations.append(iterations)
        grads = iter(
            torch.autograd.grad(gx, wanted, u, allow_unused=True, materialize_grads=True) if wanted else ()
        )
        return None, None, u if need_y else None, *(-next(grads) if need else None for need in need_params)


def implicit_fixed_point_inverse(
    g: Callable[[Tensor], Tensor],
    y: Tensor,
    params: Sequence[Tensor],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    max_iter: int = 1000,
    backward_atol: float | None = None,
    backward_rtol: float | None = None,
    backward_max_iter: int = 1000,
    where: str = "implicit_fixed_point_inverse",
    backward_iterations: list[int] | None = None,
) -> tuple[Tensor, int]:
    """``(x, iterations)`` with ``x + g(x) = y``, differentiable in ``y`` and ``params`` by the
    implicit function theorem (module docstring).

    The forward is :func:`~invflow.residual.fixed_point.fixed_point_inverse` with ``atol``,
    ``rtol``, ``max_iter``, run without a graph; the backward solves ``(I + J_g(x))ᵀ u = v`` by the
    same iteration and stopping rule (per sample, ``max|u_new − u| ≤ backward_atol +
    backward_rtol·max|v|``, defaults as the forward's) and warns naming the residual if
    ``backward_max_iter`` is reached. ``y`` has the batch in its first dimension.

    ``params``: every tensor ``g`` depends on that should receive a gradient (e.g.
    ``list(g.parameters())``); those with ``requires_grad`` do, others are ignored. ``g`` must be
    deterministic (e.g. Lipschitz layers in eval mode or with settled power iterations), as it is
    evaluated again at ``x`` in the backward. Under ``torch.no_grad()``, or if neither ``y`` nor
    any of ``params`` requires grad, this is the plain inverse (no graph). Each backward appends
    its iteration count to ``backward_iterations`` if given. First derivatives only: a double
    backward (``create_graph=True``) raises when the second derivative is taken.
    """
    wanted = [p for p in params if p.requires_grad]
    if not torch.is_grad_enabled() or not (y.requires_grad or wanted):
        with torch.no_grad():
            return fixed_point_inverse(g, y.detach(), atol, rtol, max_iter, where)
    solves = _Solves(
        atol, rtol, max_iter, backward_atol, backward_rtol, backward_max_iter, where, backward_iterations
    )
    return _ImplicitInverse.apply(g, solves, y, *wanted)
