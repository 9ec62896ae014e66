"""One mini-batch as the training loop and the objectives see it."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Batch:
    """Model input (uint8 images or float vectors) and its context: class labels ``(B,)``, context
    vectors ``(B, k)`` of a conditional toy, or zeros ``(B,)`` for toy data without one."""

    x: Tensor
    y: Tensor

    def to(self, device: torch.device) -> Batch:
        """This batch on ``device`` (non-blocking from pinned memory)."""
        return Batch(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True))
