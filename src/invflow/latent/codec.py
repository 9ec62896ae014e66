"""Held-out examples in a model's input space, and ``x -> z -> x`` through ``model.flow``."""
from __future__ import annotations

import torch
from torch import Tensor

from invflow.config import Config
from invflow.core.flow import forward_of, inverse_without_logdet_of
from invflow.core.model import FlowModel
from invflow.core.nonfinite import NonFiniteSamples, first_nonfinite_layer, nonfinite_rows
from invflow.data.held_out import HeldOutSet
from invflow.data.registry import is_toy


def held_out_examples(config: Config, n: int, data_dir: str | None = None, split: str = "test",
                      class_index: int | None = None,
                      held_out: HeldOutSet | None = None) -> tuple[Tensor, Tensor]:
    """The first ``n`` examples of ``split`` as the flow sees them, and their labels (or toy
    contexts): images at the centres of their quantization bins, ``(x_int + 1/2) / 2^n_bits`` in
    (0, 1) (deterministic, unlike training's uniform dequantization), or points of the fixed
    held-out sample of a 2D toy density. ``class_index`` keeps the examples of that class only; an
    image-folder run passes its ``held_out`` set."""
    from invflow.data.splits import load_split
    from invflow.train.evaluate import held_out_batches

    if n < 1:
        raise ValueError(f"need at least one example, got n={n}")
    if is_toy(config.data):
        batches = list(held_out_batches(config))
        x, labels = torch.cat([b.x for b in batches]).float(), torch.cat([b.y for b in batches])
    else:
        data = load_split(config, split, data_dir, held_out)
        x, labels = (data.images.float() + 0.5) / 2**config.data.n_bits, data.labels
    if class_index is not None:
        x, labels = x[labels == class_index], labels[labels == class_index]
    if x.shape[0] == 0:
        which = "" if class_index is None else f" has no example of class {class_index} and"
        raise ValueError(f"the {split} split of {config.data.dataset}{which} is empty")
    return x[:n], labels[:n]


def features(model: FlowModel, context: Tensor | None, batch: int) -> Tensor | None:
    """What the layers read of a conditional model's labels or context vectors (``None`` for an
    unconditional model, which ignores ``context``)."""
    if model.context_spec is None:
        return None
    return model.encode_context(context, batch, "the context")


@torch.no_grad()
def encode(model: FlowModel, x: Tensor, context: Tensor | None = None) -> Tensor:
    """Flat latents ``z = f(x; c)``, shape ``(B, D)`` (log-dets are computed and dropped);
    ``context`` is what the layers read (``features``), ``None`` for unconditional models."""
    z, _ = forward_of(model.flow, x, context)
    return z


@torch.no_grad()
def decode(model: FlowModel, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, int | None]:
    """``x = f^{-1}(z; c)`` and, for residual flows, the fixed-point iterations the inverse took
    (summed over blocks); ``None`` for flows with an analytic inverse. Non-finite results raise
    ``NonFiniteSamples`` naming the first layer that produced them, never reach a figure."""
    x = inverse_without_logdet_of(model.flow, z, context)
    bad = nonfinite_rows(x)
    if bool(bad.any()):
        layer = first_nonfinite_layer(model.flow, z[bad], None if context is None else context[bad])
        raise NonFiniteSamples(int(bad.sum()), x.shape[0], layer, None, x)
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
