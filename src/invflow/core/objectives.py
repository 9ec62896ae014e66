"""What a training step minimises and what evaluation measures, for the plain flow models.

- images: bits/dim of uniformly dequantized integer images (docs/architecture.md section 3);
- vectors (2D toy data): negative log-likelihood in bits per sample (``-log2 p(x)``), the unit
  of the Residual Flows paper's checkerboard study.

A model chooses its objective (``FlowModel.make_objective``); a family with another objective
defines it next to its model (the hybrid model's, ``invflow.models.hybrid.HybridObjective``).

``loss(model, batch, forward)`` computes the log-density through ``forward(x, context)`` (the
model, or its DistributedDataParallel / compiled wrapper), whose output is ``(log_prob, outputs)``
as ``FlowModel.forward`` returns it; ``context`` is the batch's labels (or context vectors) for a
conditional model (``FlowModel.batch_context``), ``None`` otherwise, so the conditional models
report ``−log p(x | y)``. ``eval_batch`` returns the metric for ``draws`` independent
draws of a stochastic log-det estimate on the same dequantized inputs, shape ``(draws, B)``,
and per-sample extras.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from invflow.data.batch import Batch
from invflow.data.dequantize import dequantize

if TYPE_CHECKING:  # annotations only: core.model imports this module
    from invflow.core.model import FlowModel

Forward = Callable[[Tensor, Tensor | None], tuple[Tensor, dict[str, Tensor]]]


class Objective(Protocol):
    """The interface the training loop and ``evaluate`` use."""

    metric: str
    extras: tuple[str, ...]

    def loss(self, model: FlowModel, batch: Batch, forward: Forward | None = None
             ) -> tuple[Tensor, dict[str, Tensor]]: ...

    def model_input(self, model: FlowModel, batch: Batch) -> Tensor: ...

    def eval_batch(self, model: FlowModel, batch: Batch, draws: int) -> tuple[Tensor, dict[str, Tensor]]: ...


def nats_to_bits_per_dim(log_prob: Tensor, dims: int, n_bits: int) -> Tensor:
    """``(-log p(x) + D log 2^n_bits) / (D ln 2)`` for a density on the [0, 1]-scaled data."""
    return (-log_prob + dims * n_bits * math.log(2)) / (dims * math.log(2))


class ImageBitsPerDim:
    """Loss = mean bits/dim of the batch."""

    metric = "bpd"
    extras: tuple[str, ...] = ()

    def __init__(self, n_bits: int) -> None:
        self.n_bits = n_bits

    def dequantized(self, model: FlowModel, batch: Batch) -> Tensor:
        return dequantize(batch.x, self.n_bits, dtype=model.dtype)

    def model_input(self, model: FlowModel, batch: Batch) -> Tensor:
        """What ``model.log_prob`` reads of ``batch``: the uniformly dequantized images."""
        return self.dequantized(model, batch)

    def loss(
        self, model: FlowModel, batch: Batch, forward: Forward | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        forward = model if forward is None else forward
        log_p, _ = forward(self.dequantized(model, batch), model.batch_context(batch))
        bpd = nats_to_bits_per_dim(log_p, model.dims, self.n_bits)
        return bpd.mean(), {self.metric: bpd.detach().mean()}

    def eval_batch(self, model: FlowModel, batch: Batch, draws: int) -> tuple[Tensor, dict[str, Tensor]]:
        x, context = self.dequantized(model, batch), model.batch_context(batch)
        return torch.stack([nats_to_bits_per_dim(model.log_prob(x, context), model.dims, self.n_bits)
                            for _ in range(draws)]), {}


class VectorBits:
    """Loss = mean ``-log2 p(x)`` of the batch (bits per sample)."""

    metric = "bits"
    extras: tuple[str, ...] = ()

    def model_input(self, model: FlowModel, batch: Batch) -> Tensor:
        """What ``model.log_prob`` reads of ``batch``: the vectors in the model's dtype."""
        return batch.x.to(model.dtype)

    def loss(
        self, model: FlowModel, batch: Batch, forward: Forward | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        forward = model if forward is None else forward
        log_p, _ = forward(self.model_input(model, batch), model.batch_context(batch))
        bits = -log_p / math.log(2)
        return bits.mean(), {self.metric: bits.detach().mean()}

    def eval_batch(self, model: FlowModel, batch: Batch, draws: int) -> tuple[Tensor, dict[str, Tensor]]:
        x, context = self.model_input(model, batch), model.batch_context(batch)
        return torch.stack([-model.log_prob(x, context) / math.log(2) for _ in range(draws)]), {}
