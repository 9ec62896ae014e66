"""Base distributions (docs/architecture.md sections 2 and 5)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


class StandardNormal(nn.Module):
    """``N(0, I)`` over events of shape ``event_shape``; ``temperature`` scales the std when sampling."""

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        # A buffer so that `sample` follows the module's device and dtype.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype the model works in (follows ``.double()`` / ``.to()``)."""
        return self._anchor.dtype

    def log_prob(self, z: Tensor) -> Tensor:
        if tuple(z.shape[1:]) != self.event_shape:
            raise ValueError(
                f"StandardNormal.log_prob: expected shape (B, {', '.join(map(str, self.event_shape))}), "
                f"got {tuple(z.shape)}"
            )
        return -0.5 * (z**2 + LOG_2PI).reshape(z.shape[0], -1).sum(dim=1)

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        if n < 1:
            raise ValueError(f"StandardNormal.sample: n must be >= 1, got {n}")
        if temperature < 0:
            raise ValueError(f"StandardNormal.sample: temperature must be >= 0, got {temperature}")
        a = self._anchor
        return temperature * torch.randn(n, *self.event_shape, device=a.device, dtype=a.dtype)
