"""MaCow: masked convolutional couplings (Ma, Kong, Zhang & Hovy 2019, "Masked convolutional flows").

A masked convolutional coupling transforms *every* pixel of the image with an affine map whose
shift and scale are computed from the pixels strictly before it in one spatial direction:

    ``y_{i,j} = (x_{i,j} + t_{i,j}(x_{<i})) · s_{i,j}(x_{<i})``,  ``log s = bounded_log_scale(h)``
    (Glow-style, bounded so the row-by-row inverse cannot explode),

where ``x_{<i}`` are the ``k_h`` preceding rows in a window ``k_w`` columns wide centred on
column ``j`` (all channels). The Jacobian is block triangular in the row order with diagonal
blocks, so ``log|det| = Σ log s``. A MaCow unit stacks four such couplings whose directions
alternate top→bottom, bottom→top, left→right and right→left, so every pixel can eventually
depend on its whole neighbourhood.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invflow.core.context import ContextBias, check_layer_context
from invflow.core.flow import Flow, SequentialFlow, check_image, zero_logdet
from invflow.layers.choices import CouplingChoice
from invflow.layers.coupling import bounded_log_scale

DIRECTIONS = ("down", "up", "right", "left")


class MaskedConvCoupling(Flow):
    """One masked convolutional coupling of MaCow (Ma et al. 2019) along one direction: the map above.

    ``direction`` names where the conditioning context comes from: ``"down"`` (top→bottom, each
    row conditioned on the rows above), ``"up"`` (bottom→top), ``"right"`` (left→right, each
    column conditioned on the columns to its left) or ``"left"`` (right→left). Internally the
    image is flipped/transposed so that the context is always "the rows above", and the
    conditioner is a convolution over a ``k_h × k_w`` window of the ``k_h`` preceding rows
    (the masked convolution, realised by shifting rather than by zeroing kernel entries; for
    the horizontal directions the window is ``k_h`` preceding columns by ``k_w`` rows),
    then ELU → 1x1 conv → ELU → zero-initialised 1x1 conv; 1x1 convs keep the causal order.
    With ``context_features = k > 0`` a learned bias of the context ``(B, k)`` is added to the
    window convolution's hidden channels (``ContextBias``): the same for every pixel, so the
    causal order, the triangular Jacobian and the row-by-row inverse are unchanged for each ``c``.

    Complexity for a ``(B, C, H, W)`` input with ``n`` hidden channels, along ``L`` = H (or W
    for horizontal directions): forward and log-det are one parallel pass,
    ``O(B·H·W·n·(C·k_h·k_w + n + C))``; the inverse needs the same arithmetic but ``L``
    sequential steps, each solving one whole row (column) at once, batched over the batch,
    the channels and the other spatial axis.
    """

    def __init__(
        self, channels: int, hidden: int, kernel_size: tuple[int, int] = (2, 3), direction: str = "down",
        context_features: int = 0,
    ) -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"MaskedConvCoupling: direction must be one of {DIRECTIONS}, got {direction!r}")
        k_h, k_w = kernel_size
        if k_h < 1 or k_w < 1:
            raise ValueError(f"MaskedConvCoupling: kernel_size must be positive, got {kernel_size}")
        self.channels = channels
        self.direction = direction
        self.kernel_size = (k_h, k_w)
        self.context = nn.Conv2d(channels, hidden, (k_h, k_w))
        last = nn.Conv2d(hidden, 2 * channels, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.head = nn.Sequential(nn.ELU(), nn.Conv2d(hidden, hidden, 1), nn.ELU(), last)
        self.context_features = context_features
        if context_features:
            self.context_bias = ContextBias(hidden, context_features)

    def _to_rows(self, x: Tensor) -> Tensor:
        """View ``x`` so that the conditioning context of each row is the rows above it."""
        if self.direction in ("right", "left"):
            x = x.transpose(-2, -1)
        if self.direction in ("up", "left"):
            x = x.flip(-2)
        return x

    def _from_rows(self, x: Tensor) -> Tensor:
        if self.direction in ("up", "left"):
            x = x.flip(-2)
        if self.direction in ("right", "left"):
            x = x.transpose(-2, -1)
        return x

    def _shift_log_scale(self, window: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """Conditioner on a zero-padded window: output row ``r`` sees window rows ``r … r + k_h − 1``."""
        k_w = self.kernel_size[1]
        left = (k_w - 1) // 2
        hidden = self.context(F.pad(window, (left, k_w - 1 - left, 0, 0)))
        if context is not None:
            hidden = self.context_bias(hidden, context.to(hidden.dtype))
        h = self.head(hidden)
        # Channels interleave (shift, pre-scale) as in AffineCoupling.
        return h[:, 0::2], bounded_log_scale(h[:, 1::2])

    def _causal_window(self, x: Tensor) -> Tensor:
        """All rows but the last below ``k_h`` zero rows: output row ``i`` sees rows ``i − k_h … i − 1``."""
        return F.pad(x[:, :, :-1], (0, 0, self.kernel_size[0], 0))

    def _layer_context(self, context: Tensor | None, batch: int) -> Tensor | None:
        return check_layer_context(context, self.context_features, batch, self.describe())

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, f"{type(self).__name__}.forward")
        context = self._layer_context(context, x.shape[0])
        rows = self._to_rows(x)
        shift, log_scale = self._shift_log_scale(self._causal_window(rows), context)
        y = (rows + shift) * log_scale.exp()
        return self._from_rows(y), log_scale.reshape(x.shape[0], -1).sum(dim=1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Row-by-row solve ``x_i = y_i / s_i(x_{<i}) − t_i(x_{<i})``, one whole row per step; the
        log-det is ``−Σ log s`` of the scales the solve used."""
        check_image(z, self.channels, f"{type(self).__name__}.inverse")
        context = self._layer_context(context, z.shape[0])
        rows = self._to_rows(z)
        k_h = self.kernel_size[0]
        # Start from k_h zero rows, the padding the forward pass sees; rows are collected in a
        # list rather than written in place so the inverse stays differentiable.
        solved = [torch.zeros_like(rows[:, :, :1])] * k_h
        logdet = zero_logdet(z)
        for i in range(rows.shape[-2]):
            shift, log_scale = self._shift_log_scale(torch.cat(solved[-k_h:], dim=2), context)
            solved.append(rows[:, :, i : i + 1] * (-log_scale).exp() - shift)
            logdet = logdet - log_scale.reshape(z.shape[0], -1).sum(dim=1)
        return self._from_rows(torch.cat(solved[k_h:], dim=2)), logdet

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}, direction={self.direction!r}"


class MaCowUnit(SequentialFlow):
    """A MaCow unit: four masked convolutional couplings, top→bottom, bottom→top, left→right, right→left.

    Ma et al. 2019; usable in a Glow step in place of the affine coupling. The
    log-det is the sum of the four ``Σ log s`` terms; the inverse runs the four row/column
    solves backwards, ``2H + 2W`` sequential steps in all (see ``MaskedConvCoupling``).
    """

    def __init__(self, channels: int, hidden: int, kernel_size: tuple[int, int] = (2, 3),
                 context_features: int = 0) -> None:
        super().__init__(*(MaskedConvCoupling(channels, hidden, kernel_size, d, context_features)
                           for d in DIRECTIONS))
        self.channels = channels
        self.context_features = context_features

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, f"{type(self).__name__}.forward")
        return super().forward(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(z, self.channels, f"{type(self).__name__}.inverse")
        return super().inverse(z, context)


@dataclass
class MaCowChoice(CouplingChoice):
    """``coupling: macow``: a :class:`MaCowUnit` in place of the coupling (images only)."""

    name = "macow"
    images_only = True

    def build(self, shape: tuple[int, ...], hidden: int, swap: bool, context: int) -> Flow:
        return MaCowUnit(shape[0], hidden, context_features=context)
