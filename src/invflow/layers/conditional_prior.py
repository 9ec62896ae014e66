"""The context-conditional Gaussian of the top latent, written as a flow onto ``N(0, I)``.

Glow's class-conditional models (Kingma & Dhariwal 2018, sec. 5) give the top latent a learned
per-class mean and log-scale, ``p(z | y) = N(μ(y), diag σ(y)²)``, computed by a zero-initialised
linear map of the one-hot label. As for the factor-out priors (``invflow.layers.split``), that
Gaussian is written here as the affine map ``ε = (z − μ(c)) · exp(−log σ(c))`` with
``log|det ∂ε/∂z| = −Σ log σ(c)``, so that a conditional model keeps a standard-normal prior and
``log p(x | c) = log N(ε; 0, I) + logdet`` (docs/architecture.md section 8). Temperature sampling
draws ``ε ~ N(0, T² I)``, i.e. ``z ~ N(μ(c), T² σ(c)²)``: the temperature scales each class's own
standard deviation.

``μ`` and ``log σ`` are per channel, broadcast over the spatial grid of an image latent
``(C, H, W)`` (as in Glow's code), or with ``per_position`` one per channel and position (a class's
mean latent map, so each class's samples start from its own spatial template), and per dimension
for vectors ``(D,)``. Labels and vectors alike reach the layer as a floating context ``(B, k)``
(``invflow.core.context``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from invflow.core.context import ContextBias, check_layer_context
from invflow.core.flow import Flow, check_shape


class ConditionalGaussianPrior(Flow):
    """``ε = (z − μ(c)) · exp(−log σ(c))`` on per-sample ``shape``; ``[μ, log σ] = W c + b`` (zero init,
    so the layer starts as the identity), per channel or (``per_position``, images) per element."""

    def __init__(self, shape: tuple[int, ...], context_features: int, per_position: bool = False) -> None:
        super().__init__()
        if context_features < 1:
            raise ValueError(
                f"ConditionalGaussianPrior: context_features must be >= 1, got {context_features}"
            )
        self.shape = tuple(shape)
        if per_position and len(self.shape) < 2:
            raise ValueError(f"ConditionalGaussianPrior: per_position needs a spatial shape (C, H, W), "
                             f"got {self.shape}")
        self.context_features = context_features
        self.per_position = per_position
        self.channels = self.shape[0]
        # log-det multiplicity of each log σ: the spatial positions it covers
        self.repeats = 1 if per_position else math.prod(self.shape[1:])
        self.params = ContextBias(2 * self.channels, context_features,
                                  spatial=self.shape[1:] if per_position else None)

    def _mean_log_std(self, z: Tensor, context: Tensor | None, where: str) -> tuple[Tensor, Tensor]:
        check_shape(z, self.shape, f"{type(self).__name__}.{where}")
        context = check_layer_context(context, self.context_features, z.shape[0], self.describe())
        h = self.params.bias(context.to(z.dtype), z.dim())  # type: ignore[union-attr]
        return h[:, : self.channels], h[:, self.channels :]

    def _logdet(self, log_std: Tensor) -> Tensor:
        return -self.repeats * log_std.reshape(log_std.shape[0], -1).sum(dim=1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, log_std = self._mean_log_std(x, context, "forward")
        return (x - mean) * torch.exp(-log_std), self._logdet(log_std)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, log_std = self._mean_log_std(z, context, "inverse")
        return mean + z * torch.exp(log_std), -self._logdet(log_std)

    def extra_repr(self) -> str:
        per_position = ", per_position=True" if self.per_position else ""
        return f"shape={self.shape}, context_features={self.context_features}{per_position}"
