"""Pure tensor maths of low-rank updates ``W = I_n + U V`` (Lu & Huang 2020, sec. 3).

``U`` is ``(n, d)`` and ``V`` is ``(d, n)`` with a small latent dimension ``d``. Applying ``W``
costs ``O(d n)`` per column instead of ``O(n^2)``; the inverse uses the Woodbury identity

    (I_n + U V)^{-1} = I_n - U (I_d + V U)^{-1} V,

and the log-determinant Sylvester's identity ``det(I_n + U V) = det(I_d + V U)``. The only
matrix ever factorised is the ``d x d`` matrix ``I_d + V U``; no ``n x n`` matrix is formed.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def init_low_rank(n: int, d: int, scale: float = 0.1) -> tuple[Tensor, Tensor]:
    """Factors ``U (n, d)``, ``V (d, n)`` with i.i.d. ``N(0, scale^2 / n)`` entries.

    The spectral norms are about ``scale (1 + sqrt(d / n))``, so ``||U V|| ≈ scale^2 (1 +
    sqrt(d/n))^2`` (0.01–0.04 for d ≤ n): ``W`` starts near, but not at, the identity and is
    well-conditioned. Lu & Huang 2020 initialise U and V with small random values; zero would
    make both gradients vanish, because each factor's gradient is proportional to the other.
    """
    std = scale / math.sqrt(n)
    return torch.randn(n, d) * std, torch.randn(d, n) * std


def capacitance(u: Tensor, v: Tensor) -> Tensor:
    """The ``d x d`` matrix ``I_d + V U`` shared by the Sylvester and Woodbury identities."""
    return torch.eye(u.shape[1], dtype=u.dtype, device=u.device) + v @ u


def sylvester_logdet(u: Tensor, v: Tensor) -> Tensor:
    """``log|det(I_n + U V)| = log|det(I_d + V U)|`` (Sylvester's determinant identity), a scalar."""
    return torch.linalg.slogdet(capacitance(u, v)).logabsdet


def woodbury_left(x: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """``(I_n + U V) x`` for ``x`` of shape ``(..., n, m)``, in ``O(d n m)``."""
    return x + u @ (v @ x)


def woodbury_left_inverse(y: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """``(I_n + U V)^{-1} y = y - U (I_d + V U)^{-1} V y`` (Woodbury identity), ``y`` ``(..., n, m)``."""
    return y - u @ torch.linalg.solve(capacitance(u, v), v @ y)


def woodbury_right(x: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """``x (I_n + U V)`` for ``x`` of shape ``(..., m, n)``, in ``O(d n m)``."""
    return x + (x @ u) @ v


def woodbury_right_inverse(y: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """``y (I_n + U V)^{-1} = y - y U (I_d + V U)^{-1} V`` (Woodbury identity), ``y`` ``(..., m, n)``."""
    return y - torch.linalg.solve(capacitance(u, v), y @ u, left=False) @ v
