"""A mixing layer from outside the library, in one file: the layer and its options class. With one
registry line (``MIXINGS["reverse-scale"] = ReverseScaleChoice``, test_new_layer.py) a config can
name it, and its harness case is ``CASE``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness import LayerCase
from invflow.core.flow import Flow
from invflow.layers.choices import MixingChoice


class ReverseScale(Flow):
    """Reverse the channel order and scale each channel: ``y_c = exp(s_c) x_{C-1-c}``,
    ``log|det| = (H·W) Σ s_c`` (``H·W = 1`` on vectors)."""

    def __init__(self, channels: int, init_log_scale: float = 0.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.full((channels,), init_log_scale))

    def _scale(self, x: Tensor) -> Tensor:
        return self.log_scale.exp().reshape(-1, *([1] * (x.dim() - 2)))

    def _pixels(self, x: Tensor) -> int:
        return x[0, 0].numel()

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = self._pixels(x) * self.log_scale.sum()
        return x.flip(1) * self._scale(x), logdet.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = -self._pixels(z) * self.log_scale.sum()
        return (z / self._scale(z)).flip(1), logdet.expand(z.shape[0])


@dataclass
class ReverseScaleChoice(MixingChoice):
    """``mixing: {name: reverse-scale, init_log_scale: s}``."""

    name = "reverse-scale"
    images_only = False
    init_log_scale: float = 0.0

    def build(self, shape: tuple[int, ...], level: int) -> Flow:
        return ReverseScale(shape[0], self.init_log_scale)


CASE = LayerCase("reverse-scale", lambda: ReverseScale(3, 0.1), (3, 4, 5),
                 at_shape=lambda s: (ReverseScale(s[0]), s))
