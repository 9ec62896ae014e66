"""Polyak / exponential moving average of the weights, used for evaluation and sampling."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

EMA_SCHEDULES = ("warmup", "constant")


def ema_decay_at(decay: float, num_averaged: int, schedule: str = "warmup") -> float:
    """The decay of update ``num_averaged``.

    ``constant``: ``decay`` itself, the Polyak averaging of Chen et al. 2019 (app. E, momentum
    0.999). ``warmup``: ``min(decay, (1 + n) / (10 + n))``, which keeps a short run's average
    from being dominated by the initial weights (with a constant 0.999 the average after 600
    steps still holds 55% of the initialisation).
    """
    if schedule == "constant":
        return decay
    if schedule == "warmup":
        return min(decay, (1.0 + num_averaged) / (10.0 + num_averaged))
    raise ValueError(f"EMA schedule must be one of {EMA_SCHEDULES}, got {schedule!r}")


def make_ema(model: nn.Module, decay: float, schedule: str = "warmup") -> AveragedModel:
    """``θ_ema ← d·θ_ema + (1 − d)·θ`` over parameters, ``d = ema_decay_at(decay, n, schedule)``
    (``torch.optim.swa_utils.AveragedModel``; the first update copies the weights).

    Buffers are not averaged but copied from the live model after each update: ActNorm's
    ``initialized`` flag and the residual blocks' power-iteration vectors are state, not weights.
    """

    @torch.no_grad()
    def average(ema_params: list[Tensor], params: list[Tensor], num_averaged: Tensor) -> None:
        weight = 1.0 - ema_decay_at(decay, int(num_averaged), schedule)
        torch._foreach_lerp_(ema_params, params, weight)

    ema_decay_at(decay, 0, schedule)  # refuse an unknown schedule now, not at the first update
    return AveragedModel(model, multi_avg_fn=average, use_buffers=False)


@torch.no_grad()
def update_ema(ema: AveragedModel, model: nn.Module) -> None:
    """One EMA update from ``model`` (the first update copies the weights)."""
    ema.update_parameters(model)
    for ema_buffer, buffer in zip(ema.module.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)
