"""Polyak / exponential moving average of the weights, used for evaluation and sampling."""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """``θ_ema ← decay·θ_ema + (1 − decay)·θ`` over parameters (``torch.optim.swa_utils``).

    Buffers are not averaged but copied from the live model after each update: ActNorm's
    ``initialized`` flag and the residual blocks' power-iteration vectors are state, not weights.
    """
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)


@torch.no_grad()
def update_ema(ema: AveragedModel, model: nn.Module) -> None:
    """One EMA update from ``model`` (the first update copies the weights)."""
    ema.update_parameters(model)
    for ema_buffer, buffer in zip(ema.module.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)
