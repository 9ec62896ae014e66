"""Space-to-depth squeeze (RealNVP, Dinh et al. 2017, sec. 3.6): ``(C, H, W) -> (4C, H/2, W/2)``."""
from __future__ import annotations

from torch import Tensor

from invflow.core.flow import Flow, check_image, zero_logdet


class Squeeze(Flow):
    """Trade spatial size for channels by ``factor x factor`` blocks; a permutation, so log|det| = 0."""

    def __init__(self, channels: int, factor: int = 2) -> None:
        super().__init__()
        if factor < 2:
            raise ValueError(f"Squeeze: factor must be >= 2, got {factor}")
        self.channels = channels
        self.factor = factor

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "Squeeze.forward", divisible_by=self.factor)
        b, c, h, w = x.shape
        f = self.factor
        y = x.reshape(b, c, h // f, f, w // f, f).permute(0, 1, 3, 5, 2, 4)
        return y.reshape(b, c * f * f, h // f, w // f), zero_logdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        f = self.factor
        check_image(z, self.channels * f * f, "Squeeze.inverse")
        b, _, h, w = z.shape
        x = z.reshape(b, self.channels, f, f, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, self.channels, h * f, w * f), zero_logdet(z)
