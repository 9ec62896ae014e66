"""Held-out examples in a model's input space, and ``x -> z -> x`` through ``model.flow``."""
from __future__ import annotations

import torch
from torch import Tensor

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.core.nonfinite import NonFiniteSamples, first_nonfinite_layer, nonfinite_rows
from invflow.data.registry import is_toy


def held_out_examples(config: Config, n: int, data_dir: str | None = None, split: str = "test") -> Tensor:
    """The first ``n`` examples of ``split`` as the flow sees them: images at the centres of their
    quantization bins, ``(x_int + 1/2) / 2^n_bits`` in (0, 1) (deterministic, unlike training's
    uniform dequantization), or points of the fixed held-out sample of a 2D toy density."""
    from invflow.train.evaluate import held_out_batches, load_split

    if n < 1:
        raise ValueError(f"need at least one example, got n={n}")
    if is_toy(config.data):
        points = torch.cat([batch.x for batch in held_out_batches(config)])
        return points[:n].float()
    images = load_split(config, split, data_dir).images[:n]
    if images.shape[0] == 0:
        raise ValueError(f"the {split} split of {config.data.dataset} is empty")
    return (images.float() + 0.5) / 2**config.data.n_bits


@torch.no_grad()
def encode(model: FlowModel, x: Tensor) -> Tensor:
    """Flat latents ``z = f(x)``, shape ``(B, D)`` (log-dets are computed and dropped)."""
    z, _ = model.flow(x)
    return z


@torch.no_grad()
def decode(model: FlowModel, z: Tensor) -> tuple[Tensor, int | None]:
    """``x = f^{-1}(z)`` and, for residual flows, the fixed-point iterations the inverse took
    (summed over blocks); ``None`` for flows with an analytic inverse. Non-finite results raise
    ``NonFiniteSamples`` naming the first layer that produced them, never reach a figure."""
    x = model.flow.inverse_without_logdet(z)
    bad = nonfinite_rows(x)
    if bool(bad.any()):
        raise NonFiniteSamples(int(bad.sum()), x.shape[0], first_nonfinite_layer(model.flow, z[bad]), None, x)
    counts = model.inverse_iteration_counts()
    return x, (sum(counts) if counts else None)


def iterations_note(model: FlowModel, iterations: int | None) -> str:
    """`` (N fixed-point iterations over B residual blocks)`` or an empty string."""
    if iterations is None:
        return ""
    return (
        f" ({iterations} fixed-point iterations over {len(model.inverse_iteration_counts())} residual blocks)"
    )


def scale_note(config: Config) -> str:
    """What the printed error is measured in: the [0, 1] image scale beside one intensity level."""
    if is_toy(config.data):
        return " (data units)"
    levels = 2**config.data.n_bits
    return f" on the [0, 1] pixel scale (one of the {levels} intensity levels is {1 / levels:.2g})"
