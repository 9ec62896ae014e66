"""Capabilities a layer declares by subclassing, so that ``FlowModel`` finds them by type
rather than by probing attribute names (docs/architecture.md, "The Flow contract")."""
from __future__ import annotations

import torch


class UpdatesAfterOptimizerStep:
    """A module holding state derived from its weights (e.g. power-iteration vectors), refreshed
    by ``FlowModel.after_optimizer_step`` after every optimizer step."""

    def after_optimizer_step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def refresh_weight_derived_state(module: torch.nn.Module) -> None:
    """Call ``after_optimizer_step`` on every layer in ``module`` that declares it: after each
    optimizer step, or before using weights changed in another way (e.g. averaged ones). The one
    walk over a model's layers for it; ``FlowModel.after_optimizer_step`` is this on the model."""
    for layer in module.modules():
        if isinstance(layer, UpdatesAfterOptimizerStep):
            layer.after_optimizer_step()


class LowPrecisionConditioner:
    """A layer whose conditioner network may run under autocast in ``autocast_dtype`` (bf16/fp16)
    while its invertible map and log-det stay in the input's precision; set by
    ``FlowModel.set_conditioner_precision``."""

    autocast_dtype: torch.dtype | None = None
