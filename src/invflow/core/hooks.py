"""Capabilities a layer declares by subclassing, so that ``FlowModel`` finds them by type
rather than by probing attribute names (docs/architecture.md, "The Flow contract")."""
from __future__ import annotations

import torch


class UpdatesAfterOptimizerStep:
    """A module holding state derived from its weights (e.g. power-iteration vectors), refreshed
    by ``FlowModel.after_optimizer_step`` after every optimizer step."""

    def after_optimizer_step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class LowPrecisionConditioner:
    """A layer whose conditioner network may run under autocast in ``autocast_dtype`` (bf16/fp16)
    while its invertible map and log-det stay in the input's precision; set by
    ``FlowModel.set_conditioner_precision``."""

    autocast_dtype: torch.dtype | None = None
