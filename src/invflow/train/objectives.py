"""What a training step minimises and what evaluation measures, per kind of data.

- images: bits/dim of uniformly dequantized integer images (DESIGN.md section 3);
- 2D toy data: negative log-likelihood in bits per sample (``-log2 p(x)``), the unit of the
  Residual Flows paper's checkerboard study;
- hybrid models: ``−(λ·log p(x) + log p(y|x))`` (Chen et al. 2019, sec. 6.3), reporting
  bits/dim and accuracy.

``loss(model, batch, forward)`` computes the log-density through ``forward`` (the model, or its
DistributedDataParallel / compiled wrapper, whose ``forward`` is ``log_prob``). ``eval_batch``
returns the metric for ``draws`` independent draws of a stochastic log-det estimate on the same
dequantized inputs, shape ``(draws, B)``, and per-sample extras.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from invflow.core.model import FlowModel, nats_to_bits_per_dim
from invflow.data.dequantize import dequantize
from invflow.train.batches import Batch


class ImageBitsPerDim:
    """Loss = mean bits/dim of the batch."""

    metric = "bpd"
    extras: tuple[str, ...] = ()

    def __init__(self, n_bits: int) -> None:
        self.n_bits = n_bits

    def dequantized(self, model: FlowModel, batch: Batch) -> Tensor:
        return dequantize(batch.x, self.n_bits, dtype=model.prior.dtype)

    def loss(self, model: FlowModel, batch: Batch, forward=None) -> tuple[Tensor, dict[str, Tensor]]:
        log_p = (model if forward is None else forward)(self.dequantized(model, batch))
        bpd = nats_to_bits_per_dim(log_p, model.dims, self.n_bits)
        return bpd.mean(), {self.metric: bpd.detach().mean()}

    def eval_batch(self, model: FlowModel, batch: Batch, draws: int) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.dequantized(model, batch)
        return torch.stack([nats_to_bits_per_dim(model.log_prob(x), model.dims, self.n_bits)
                            for _ in range(draws)]), {}


class VectorBits:
    """Loss = mean ``-log2 p(x)`` of the batch (bits per sample)."""

    metric = "bits"
    extras: tuple[str, ...] = ()

    def loss(self, model: FlowModel, batch: Batch, forward=None) -> tuple[Tensor, dict[str, Tensor]]:
        bits = -(model if forward is None else forward)(batch.x.to(model.prior.dtype)) / math.log(2)
        return bits.mean(), {self.metric: bits.detach().mean()}

    def eval_batch(self, model: FlowModel, batch: Batch, draws: int) -> tuple[Tensor, dict[str, Tensor]]:
        x = batch.x.to(model.prior.dtype)
        return torch.stack([-model.log_prob(x) / math.log(2) for _ in range(draws)]), {}


class HybridObjective(ImageBitsPerDim):
    """``−(λ·log p(x) + log p(y|x))`` averaged over the batch, with λ = ``model.hybrid_weight``;
    λ = 0 trains a pure classifier."""

    extras = ("accuracy",)

    def loss(self, model, batch: Batch, forward=None) -> tuple[Tensor, dict[str, Tensor]]:
        log_p, logits = (model if forward is None else forward)(self.dequantized(model, batch))
        bpd = nats_to_bits_per_dim(log_p, model.dims, self.n_bits)
        cross_entropy = F.cross_entropy(logits, batch.y)
        loss = -model.hybrid_weight * log_p.mean() + cross_entropy
        accuracy = (logits.argmax(dim=1) == batch.y).float().mean()
        return loss, {self.metric: bpd.detach().mean(), "cross_entropy": cross_entropy.detach(),
                      "accuracy": accuracy.detach()}

    def eval_batch(self, model, batch: Batch, draws: int) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.dequantized(model, batch)
        values, logits = [], None
        for _ in range(draws):
            log_p, logits = model.log_prob_and_logits(x)
            values.append(nats_to_bits_per_dim(log_p, model.dims, self.n_bits))
        return torch.stack(values), {"accuracy": (logits.argmax(dim=1) == batch.y).to(values[0].dtype)}


Objective = ImageBitsPerDim | VectorBits | HybridObjective


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Move a batch to ``device`` (non-blocking from pinned memory)."""
    return Batch(batch.x.to(device, non_blocking=True), batch.y.to(device, non_blocking=True))
