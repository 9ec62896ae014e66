"""Fixed per-channel standardisation ``y = (x − mean) / std`` as a flow (used by the hybrid
models of Chen et al. 2019 sec. 6.3 instead of the logit transform): ``log|det| = −H·W·Σ_c log std_c``."""
from __future__ import annotations

import torch
from torch import Tensor

from invflow.core.flow import Flow, check_shape


class Standardize(Flow):
    """Standardise ``(C, H, W)`` images with fixed per-channel ``mean`` and ``std``."""

    def __init__(self, shape: tuple[int, int, int], mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.shape = tuple(shape)
        if len(mean) != shape[0] or len(std) != shape[0] or min(std) <= 0:
            raise ValueError(f"Standardize: need {shape[0]} means and positive stds, got {mean}, {std}")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def _logdet(self, x: Tensor) -> Tensor:
        logdet = -self.shape[1] * self.shape[2] * torch.log(self.std).sum()
        return logdet.to(x.dtype).expand(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(x, self.shape, "Standardize.forward")
        return (x - self.mean) / self.std, self._logdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(z, self.shape, "Standardize.inverse")
        return z * self.std + self.mean, -self._logdet(z)
