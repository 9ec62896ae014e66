"""What a training step minimises and what it reports, per kind of data.

- images: bits/dim of uniformly dequantized integer images (DESIGN.md section 3);
- 2D toy data: negative log-likelihood in bits per sample (``-log2 p(x)``), the unit of the
  Residual Flows paper's checkerboard study.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from invflow.core.model import FlowModel
from invflow.train.batches import Batch


class ImageBitsPerDim:
    """Loss = mean bits/dim of the batch."""

    metric = "bpd"

    def __init__(self, n_bits: int) -> None:
        self.n_bits = n_bits

    def per_sample(self, model: FlowModel, batch: Batch) -> Tensor:
        return model.bits_per_dim(batch.x, self.n_bits)

    def loss(self, model: FlowModel, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        bpd = self.per_sample(model, batch)
        return bpd.mean(), {self.metric: bpd.detach().mean()}


class VectorBits:
    """Loss = mean ``-log2 p(x)`` of the batch (bits per sample)."""

    metric = "bits"

    def per_sample(self, model: FlowModel, batch: Batch) -> Tensor:
        return -model.log_prob(batch.x) / math.log(2)

    def loss(self, model: FlowModel, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        bits = self.per_sample(model, batch)
        return bits.mean(), {self.metric: bits.detach().mean()}


Objective = ImageBitsPerDim | VectorBits


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Move a batch to ``device`` (non-blocking from pinned memory)."""
    return Batch(batch.x.to(device, non_blocking=True), batch.y.to(device, non_blocking=True))
