"""Induced mixed p-norms of linear operators (Chen et al. 2019, appendix D; "generalized
spectral norm").

For ``A: (R^n, ||.||_p) -> (R^m, ||.||_q)`` the induced norm is
``||A||_{p->q} = max_{||x||_p = 1} ||A x||_q``. Two regimes:

- **closed form** when ``p = 1`` (the max is attained at a vertex ``±e_j`` of the l1 ball:
  the largest q-norm of a column) or ``q = ∞`` (the largest dual-norm ``||.||_{p*}`` of a
  row); ``1->1`` and ``∞->∞`` are the max abs column / row sum. For a stride-1 "same"
  convolution the columns and rows of the operator are (cropped) copies of the kernel, so
  these are per-kernel-slice norms, exact once the image is at least as large as the kernel
  and an upper bound below that.
- otherwise the **generalized power method** (Boyd 1974; Higham 1992) of the
  paper: ``x <- dual_{p*}(A^T dual_q(A x))``. For ``p = q = 2`` it is ordinary power
  iteration and converges to the spectral norm; for other orders it converges to a local
  maximiser, so its value is a lower bound (as in the paper).

Orders are floats (``math.inf`` allowed) or 0-d tensors (learned orders), never below 1.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

Order = float | Tensor
Operator = Callable[[Tensor], Tensor]


def is_inf(p: Order) -> bool:
    """Whether an order is ∞ (learned tensor orders are always finite)."""
    return not isinstance(p, Tensor) and math.isinf(p)


def conjugate(p: Order) -> Order:
    """Hölder conjugate ``p* = p / (p - 1)`` with ``1* = ∞`` and ``∞* = 1``."""
    if is_inf(p):
        return 1.0
    if not isinstance(p, Tensor) and p == 1:
        return math.inf
    return p / (p - 1)


def lp_norm(x: Tensor, p: Order) -> Tensor:
    """``||x_b||_p`` for every row ``b`` of ``x`` (all dims but the first flattened).

    Computed as ``m * ||x / m||_p`` with ``m = max|x|`` so large ``p`` cannot overflow;
    differentiable in ``x`` and in a tensor ``p``.
    """
    if not isinstance(p, Tensor) and p in (1, 2):
        # no overflow to guard against below |x| ~ 1e19 (float32): the library kernel, one call
        return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), ord=p, dim=1)
    a = x.reshape(x.shape[0], -1).abs()
    if is_inf(p):
        return a.amax(dim=1)
    m = a.amax(dim=1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    return m.squeeze(1) * (a / m).pow(p).sum(dim=1).pow(1 / p)


def dual_direction(y: Tensor, p: Order) -> Tensor:
    """The maximiser ``w`` of ``<w, y>`` over ``||w||_{p*} <= 1`` (value ``||y||_p``), per row.

    ``sign(y)|y|^{p-1} / ||y||_p^{p-1}`` for finite ``p``; ``sign(y)`` for ``p = 1``; for
    ``p = ∞`` the l1-ball vertex at ``argmax|y|`` (ties share the mass).
    """
    flat = y.reshape(y.shape[0], -1)
    if not isinstance(p, Tensor) and p == 2:
        return y / lp_norm(flat, 2).clamp_min(torch.finfo(y.dtype).tiny).reshape(-1, *([1] * (y.dim() - 1)))
    if is_inf(p):
        a = flat.abs()
        mask = (a == a.amax(dim=1, keepdim=True)).to(y.dtype)
        w = torch.sign(flat) * mask / mask.sum(dim=1, keepdim=True)
    elif not isinstance(p, Tensor) and p == 1:
        w = torch.sign(flat)
    else:
        scale = flat.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(y.dtype).tiny)
        w = torch.sign(flat) * (flat.abs() / scale).pow(p - 1)
        w = w / lp_norm(w, conjugate(p)).unsqueeze(1)
    return w.reshape(y.shape)


def normalize(x: Tensor, p: Order) -> Tensor:
    """``x / ||x||_p`` per row."""
    norm = lp_norm(x, p).clamp_min(torch.finfo(x.dtype).tiny)
    return x / norm.reshape(-1, *([1] * (x.dim() - 1)))


def power_step_from_image(au: Tensor, adjoint: Operator, p: Order, q: Order) -> Tensor:
    """One generalized power step ``u <- dual_{p*}(A^T dual_q(A u))`` (Higham 1992) from the image
    ``A u`` (which the caller has computed for ``σ`` anyway, so ``A`` is applied once per step).

    ``u`` has unit p-norm after the step; ``||A u||_q`` does not decrease.
    """
    z = adjoint(dual_direction(au, q))
    return normalize(dual_direction(z, conjugate(p)), p)


def norm_estimate(u: Tensor, forward: Operator, p: Order, q: Order) -> Tensor:
    """``||A u||_q / ||u||_p``: a lower bound of ``||A||_{p->q}``, differentiable in ``A``, p, q."""
    return (lp_norm(forward(u), q) / lp_norm(u, p)).squeeze(0)


def has_closed_form(p: Order, q: Order) -> bool:
    """Whether ``||A||_{p->q}`` has the column (``p = 1``) or row (``q = ∞``) closed form."""
    if isinstance(p, Tensor) or isinstance(q, Tensor):
        return False
    return p == 1 or math.isinf(q)


def closed_form_norm(weight: Tensor, p: Order, q: Order) -> Tensor:
    """``||A||_{p->q}`` for ``p = 1`` or ``q = ∞`` from a matrix ``(out, in)`` or conv kernel
    ``(out, in, kh, kw)``.

    ``p = 1``: ``max_j ||A e_j||_q`` (column norms; for a kernel, per input channel ``K[:, j]``).
    ``q = ∞``: ``max_i ||A^T e_i||_{p*}`` (row norms; for a kernel, per output channel ``K[i]``).
    """
    if not has_closed_form(p, q):
        raise ValueError(f"no closed form for the induced {p}->{q} norm")
    if p == 1:
        return lp_norm(weight.transpose(0, 1), q).amax()
    return lp_norm(weight, conjugate(p)).amax()
