"""One mini-batch as the training loop and the objectives see it."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Batch:
    """Model input (uint8 images or float vectors) and class labels (zeros for toy data)."""

    x: Tensor
    y: Tensor

    def to(self, device: torch.device) -> Batch:
        """This batch on ``device`` (non-blocking from pinned memory)."""
        return Batch(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True))
