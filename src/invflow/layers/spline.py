"""Rational-quadratic neural spline coupling (Durkan, Bekasov, Murray & Papamakarios 2019).

Inside ``[-B, B]`` each element is mapped by a monotone rational-quadratic spline with ``K``
bins whose knots ``(x_k, y_k)`` and knot derivatives ``δ_k`` come from unconstrained
parameters; outside it the map is the identity (the paper's linear tails), so the boundary
derivatives are fixed to 1 and the map is C¹ at ``±B``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from invflow.config import positive
from invflow.core.flow import Flow
from invflow.layers.choices import CouplingChoice
from invflow.layers.coupling import ConditionerFactory, _Coupling


def bin_knots(unnormalized: Tensor, tail_bound: float, min_size: float) -> Tensor:
    """Knot positions ``-B = x_0 < … < x_K = B`` from unconstrained bin sizes (Durkan et al. 2019).

    Sizes are ``min_size + (1 − K·min_size)·softmax(θ)`` as fractions of ``2B``, so every bin is
    at least ``2B·min_size`` wide; returns shape ``(..., K + 1)``.
    """
    bins = unnormalized.shape[-1]
    if min_size * bins > 1.0:
        raise ValueError(
            f"minimum bin size {min_size} is too large for {bins} bins (need min_size * bins <= 1)"
        )
    sizes = min_size + (1.0 - min_size * bins) * torch.softmax(unnormalized, dim=-1)
    cumulative = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    knots = tail_bound * (2.0 * cumulative - 1.0)
    # Pin the end knots exactly to ±B so the spline meets the identity tails without rounding gaps.
    knots[..., 0] = -tail_bound
    knots[..., -1] = tail_bound
    return knots


def knot_derivatives(unnormalized: Tensor, min_derivative: float) -> Tensor:
    """Derivatives ``δ_0 … δ_K`` at the knots: 1 at the two ends (linear tails), interior ``K − 1`` positive.

    Interior ``δ = min_derivative + softplus(θ + c)`` with ``c`` chosen so that ``θ = 0`` gives
    ``δ = 1``: zero parameters give the identity map. Returns shape ``(..., K + 1)``.
    """
    if not 0.0 <= min_derivative < 1.0:
        raise ValueError(f"min_derivative must lie in [0, 1), got {min_derivative}")
    shift = math.log(math.expm1(1.0 - min_derivative))  # softplus(shift) = 1 - min_derivative
    interior = min_derivative + F.softplus(unnormalized + shift)
    return F.pad(interior, (1, 1), value=1.0)


def _gather(values: Tensor, index: Tensor) -> Tensor:
    return values.gather(-1, index.unsqueeze(-1)).squeeze(-1)


def _check_spline_shapes(inputs: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor) -> None:
    bins = widths.shape[-1]
    if bins < 1:
        raise ValueError("rational_quadratic_spline: need at least one bin")
    expected = {
        "unnormalized_widths": (widths, (*inputs.shape, bins)),
        "unnormalized_heights": (heights, (*inputs.shape, bins)),
        "unnormalized_derivatives": (derivatives, (*inputs.shape, bins - 1)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"rational_quadratic_spline: {name} must have shape {shape}, got {tuple(tensor.shape)}"
            )


def rational_quadratic_spline(
    inputs: Tensor,
    unnormalized_widths: Tensor,
    unnormalized_heights: Tensor,
    unnormalized_derivatives: Tensor,
    inverse: bool = False,
    tail_bound: float = 3.0,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline with identity tails, applied elementwise.

    ``inputs`` has any shape ``S``; ``unnormalized_widths`` and ``unnormalized_heights`` have
    shape ``S + (K,)`` and ``unnormalized_derivatives`` ``S + (K − 1,)`` (the interior knots;
    the end derivatives are 1 to match the tails). With ``ξ = (x − x_k)/w_k`` and
    ``s_k = h_k/w_k`` the forward map in bin ``k`` is (Durkan et al. 2019, eq. (4))

        ``g(x) = y_k + h_k [s_k ξ² + δ_k ξ(1−ξ)] / [s_k + (δ_{k+1} + δ_k − 2 s_k) ξ(1−ξ)]``,

    its derivative is eq. (5), and the inverse solves the quadratic ``aξ² + bξ + c = 0`` of
    appendix A with the cancellation-free root ``ξ = 2c / (−b − √(b² − 4ac))``.

    Returns ``(outputs, logabsdet)``, both of shape ``S``: ``logabsdet`` is ``log g'(x)`` of the
    forward map at the input for ``inverse=False`` and ``−log g'(x)`` at the output
    ``x = g⁻¹(y)`` for ``inverse=True`` (0 in the tails).
    """
    _check_spline_shapes(inputs, unnormalized_widths, unnormalized_heights, unnormalized_derivatives)
    x_knots = bin_knots(unnormalized_widths, tail_bound, min_bin_width)
    y_knots = bin_knots(unnormalized_heights, tail_bound, min_bin_height)
    deriv = knot_derivatives(unnormalized_derivatives, min_derivative)

    inside = (inputs >= -tail_bound) & (inputs <= tail_bound)
    # Every element is evaluated on its value clamped into [-B, B] (finite values, finite
    # gradients); the tails then take the identity through torch.where.
    clamped = inputs.clamp(-tail_bound, tail_bound)
    search_knots = y_knots if inverse else x_knots
    k = (clamped.unsqueeze(-1) >= search_knots[..., 1:-1]).sum(dim=-1)

    x_k, y_k = _gather(x_knots, k), _gather(y_knots, k)
    width = _gather(x_knots, k + 1) - x_k
    height = _gather(y_knots, k + 1) - y_k
    d_k, d_k1 = _gather(deriv, k), _gather(deriv, k + 1)
    slope = height / width
    curvature = d_k1 + d_k - 2.0 * slope

    if inverse:
        rel = clamped - y_k
        a = height * (slope - d_k) + rel * curvature
        b = height * d_k - rel * curvature
        c = -slope * rel
        discriminant = (b.square() - 4.0 * a * c).clamp_min(0.0)
        xi = (2.0 * c) / (-b - discriminant.sqrt())
    else:
        xi = (clamped - x_k) / width
    xi_1m = xi * (1.0 - xi)
    denominator = slope + curvature * xi_1m
    if inverse:
        spline_out = x_k + xi * width
    else:
        spline_out = y_k + height * (slope * xi.square() + d_k * xi_1m) / denominator
    derivative_numerator = slope.square() * (
        d_k1 * xi.square() + 2.0 * slope * xi_1m + d_k * (1.0 - xi).square()
    )
    log_derivative = derivative_numerator.log() - 2.0 * denominator.log()

    outputs = torch.where(inside, spline_out, inputs)
    logabsdet = torch.where(inside, -log_derivative if inverse else log_derivative, torch.zeros_like(inputs))
    return outputs, logabsdet


class SplineCoupling(_Coupling):
    """Coupling ``y_b = g_θ(x_b)`` with ``θ = NN(x_a)`` a rational-quadratic spline per element.

    Durkan et al. 2019, RQ-NSF (C): ``log|det| = Σ log g'(x_b)`` (eq. (5)). The
    conditioner emits ``3K − 1`` parameters per transformed element (``K`` widths, ``K``
    heights, ``K − 1`` interior derivatives); its zero-initialised output makes the layer
    start as the identity. Works for images ``(C, H, W)`` and vectors ``(D,)``.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        hidden: int | None = None,
        swap: bool = False,
        bins: int = 4,
        tail_bound: float = 3.0,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
        conditioner: ConditionerFactory | None = None,
        context_features: int = 0,
    ) -> None:
        if bins < 1:
            raise ValueError(f"SplineCoupling: bins must be >= 1, got {bins}")
        if tail_bound <= 0:
            raise ValueError(f"SplineCoupling: tail_bound must be positive, got {tail_bound}")
        for name, value in (("min_bin_width", min_bin_width), ("min_bin_height", min_bin_height)):
            if not 0.0 <= value * bins <= 1.0:
                raise ValueError(
                    f"SplineCoupling: {name}={value} with {bins} bins needs 0 <= {name} * bins <= 1"
                )
        if not 0.0 <= min_derivative < 1.0:
            raise ValueError(f"SplineCoupling: min_derivative must lie in [0, 1), got {min_derivative}")
        # The base class sizes the conditioner from params_per_dim, so set it before building.
        self.params_per_dim = 3 * bins - 1
        super().__init__(shape, hidden, swap, conditioner, context_features)
        self.bins = bins
        self.tail_bound = tail_bound
        self.min_bin_width = min_bin_width
        self.min_bin_height = min_bin_height
        self.min_derivative = min_derivative

    def _spline(self, values: Tensor, h: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        # h is (B, n_b * P, *spatial) with each element's P parameters contiguous in dim 1.
        params = h.reshape(values.shape[0], values.shape[1], self.params_per_dim, *values.shape[2:])
        params = params.movedim(2, -1)
        widths, heights, derivs = params.split((self.bins, self.bins, self.bins - 1), dim=-1)
        return rational_quadratic_spline(
            values, widths, heights, derivs, inverse=inverse, tail_bound=self.tail_bound,
            min_bin_width=self.min_bin_width, min_bin_height=self.min_bin_height,
            min_derivative=self.min_derivative,
        )

    def _transform(self, b: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        y, logabsdet = self._spline(b, h, inverse=False)
        return y, logabsdet.reshape(b.shape[0], -1).sum(dim=1)

    def _inverse_transform(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        x, logabsdet = self._spline(y, h, inverse=True)
        return x, logabsdet.reshape(y.shape[0], -1).sum(dim=1)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, bins={self.bins}, tail_bound={self.tail_bound}, swap={self.swap}"


@dataclass
class SplineChoice(CouplingChoice):
    """``coupling: {name: spline, bins: K, tail_bound: B}``: :class:`SplineCoupling` (Lu & Huang 2020,
    app. C.1: 4 bins)."""

    name = "spline"
    bins: int = 4
    tail_bound: float = 3.0

    def validate(self) -> None:
        positive(self, "bins", "tail_bound")

    def build(self, shape: tuple[int, ...], hidden: int, swap: bool, context: int) -> Flow:
        return SplineCoupling(shape, hidden, swap=swap, bins=self.bins, tail_bound=self.tail_bound,
                              context_features=context)
