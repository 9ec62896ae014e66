"""Conditioning contexts (docs/architecture.md section 2, "Contexts").

A conditional model reads ``p(x | c)`` for one of two kinds of context:

- **class labels**: an integer tensor ``(B,)`` with values in ``[0, num_classes)``;
- **vectors**: a floating tensor ``(B, context_dim)``.

``ContextSpec`` is the model's statement of which kind it takes; ``ContextSpec.encode`` checks a
user's context against it and turns it into what every layer reads: a floating tensor
``(B, features)`` (a one-hot row per label, the vector itself otherwise), so each conditional layer
learns its own embedding of the label as the first linear map it applies (zuko's and nflows'
convention of one float context for every transform). Layers check that tensor with
``check_layer_context``; a layer built without context accepts ``context`` and ignores it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ContextSpec:
    """What a conditional model is conditioned on: ``num_classes`` labels or ``context_dim``-wide
    vectors (exactly one of the two)."""

    num_classes: int | None = None
    context_dim: int | None = None

    def __post_init__(self) -> None:
        if (self.num_classes is None) == (self.context_dim is None):
            raise ValueError("ContextSpec: give exactly one of num_classes and context_dim")
        value = self.num_classes if self.num_classes is not None else self.context_dim
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"ContextSpec: {'num_classes' if self.num_classes else 'context_dim'} must be a "
                f"positive integer, got {value!r}"
            )
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"ContextSpec: num_classes must be >= 2, got {self.num_classes}")

    @property
    def features(self) -> int:
        """Width of the floating context every layer reads."""
        return self.num_classes if self.num_classes is not None else self.context_dim  # type: ignore[return-value]

    @property
    def is_class(self) -> bool:
        return self.num_classes is not None

    def example(self, n: int) -> Tensor:
        """``n`` valid contexts (labels cycling through the classes, or zero vectors): for timing
        and shape checks, where the content does not matter."""
        if self.is_class:
            return torch.arange(n) % self.num_classes
        return torch.zeros(n, self.context_dim)

    def describe(self) -> str:
        """``"class labels (B,) in [0, 10)"`` or ``"vectors (B, 3)"``: what ``encode`` expects."""
        if self.is_class:
            return f"integer class labels (B,) in [0, {self.num_classes})"
        return f"floating vectors (B, {self.context_dim})"

    def encode(
        self, context: object, batch: int | None, where: str, dtype: torch.dtype, broadcast: bool = False
    ) -> Tensor:
        """The floating ``(batch, features)`` context layers read (one-hot rows for labels), or a
        one-line ``ValueError`` naming what was expected.

        ``batch=None`` takes the context's own batch size; ``broadcast=True`` also accepts one
        context (a 0-dim label, a ``(context_dim,)`` vector or a batch of one) repeated ``batch`` times.
        """
        if context is None:
            raise ValueError(f"{where}: this model is conditional and needs a context: {self.describe()}")
        if not isinstance(context, Tensor):
            raise ValueError(
                f"{where}: the context must be a tensor ({self.describe()}), got "
                f"{type(context).__name__} (a sampling temperature is the keyword temperature=)"
            )
        single = context.dim() == (0 if self.is_class else 1)
        if single and broadcast:
            context = context.unsqueeze(0)
        if self.is_class:
            encoded = F.one_hot(self._labels(context, where), self.num_classes).to(dtype)
        else:
            encoded = self._vectors(context, where, dtype)
        if batch is not None and encoded.shape[0] != batch:
            if broadcast and encoded.shape[0] == 1:
                return encoded.expand(batch, -1)
            raise ValueError(
                f"{where}: the context has batch size {encoded.shape[0]}, the input {batch}"
                + (" (or give one context for all)" if broadcast else "")
            )
        return encoded

    def _labels(self, context: Tensor, where: str) -> Tensor:
        if context.dtype.is_floating_point or context.dtype.is_complex or context.dtype == torch.bool:
            raise ValueError(f"{where}: expected {self.describe()}, got dtype {context.dtype}")
        if context.dim() != 1:
            raise ValueError(f"{where}: expected {self.describe()}, got shape {tuple(context.shape)}")
        # value checks need the data: skipped while torch.compile / torch.export trace the model
        if torch.compiler.is_compiling():
            return context
        low, high = (int(context.min()), int(context.max())) if context.numel() else (0, 0)
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"{where}: class label {bad} is out of range; expected {self.describe()}")
        return context

    def _vectors(self, context: Tensor, where: str, dtype: torch.dtype) -> Tensor:
        if not context.dtype.is_floating_point:
            raise ValueError(f"{where}: expected {self.describe()}, got dtype {context.dtype}")
        if context.dim() != 2 or context.shape[1] != self.context_dim:
            raise ValueError(f"{where}: expected {self.describe()}, got shape {tuple(context.shape)}")
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(context).all()):
            raise ValueError(f"{where}: the context holds NaN or infinite values")
        return context.to(dtype)


def check_layer_context(context: Tensor | None, features: int, batch: int, where: str) -> Tensor | None:
    """``context`` if the layer uses one (``features > 0``), checked as ``(batch, features)`` floats;
    ``None`` for a layer without context (which ignores whatever it is given)."""
    if features == 0:
        return None
    if context is None:
        raise ValueError(f"{where}: this layer is conditional and needs a context (B, {features})")
    if not isinstance(context, Tensor) or not context.dtype.is_floating_point:
        raise ValueError(
            f"{where}: expected a floating context (B, {features}), got "
            f"{getattr(context, 'dtype', type(context).__name__)}"
        )
    if context.dim() != 2 or context.shape[1] != features or context.shape[0] != batch:
        raise ValueError(
            f"{where}: expected a context of shape ({batch}, {features}), got {tuple(context.shape)}"
        )
    return context


class ContextBias(nn.Module):
    """``h + W c + b``: a learned, zero-initialised, context-dependent bias of a hidden state ``h`` of
    shape ``(B, C, *spatial)``, one per channel broadcast over the spatial grid, or with ``spatial``
    (the grid's size) one per channel and position. As a function of ``h`` it is a translation, so it
    leaves every Lipschitz constant in ``h`` unchanged (what the residual blocks need, Chen et al.
    2019 sec. 3: ``Lip_x g(·, c) < 1`` for every ``c``)."""

    def __init__(self, channels: int, context_features: int, spatial: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.spatial = None if spatial is None else tuple(spatial)
        self.linear = nn.Linear(context_features, channels * math.prod(self.spatial or ()))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def bias(self, context: Tensor, dims: int) -> Tensor:
        """The bias for a hidden state of ``dims`` dimensions: ``(B, C, 1, …)``, or ``(B, C, *spatial)``
        per position."""
        b = self.linear(context)
        if self.spatial is not None:
            return b.reshape(b.shape[0], self.channels, *self.spatial)
        return b.reshape(*b.shape, *([1] * (dims - 2)))

    def forward(self, h: Tensor, context: Tensor) -> Tensor:
        return h + self.bias(context, h.dim())

    def forward_with_jacobian(
        self, h: Tensor, t: Tensor | None, context: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """A translation: the carried Jacobian passes unchanged
        (:mod:`invflow.residual.forward_jacobian`)."""
        return self(h, context), t


def broadcast_context(context: Tensor, like: Tensor) -> Tensor:
    """The ``(B, k)`` context as ``(B, k, *spatial)`` of ``like``: what a convolutional conditioner
    reads beside its input channels (a learned embedding of the label, broadcast over the grid)."""
    return context.reshape(*context.shape, *([1] * (like.dim() - 2))).expand(-1, -1, *like.shape[2:])
