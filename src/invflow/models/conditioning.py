"""What a model built with ``model.conditional`` is conditioned on (docs/architecture.md, "Contexts")."""
from __future__ import annotations

from invflow.config import DataConfig
from invflow.core.context import ContextSpec
from invflow.data.registry import context_of


def model_context(conditional: bool, data: DataConfig) -> ContextSpec | None:
    """The ``ContextSpec`` of a model of ``data`` built with ``model.conditional``: the data set's
    class labels or a conditional toy's context vectors (``invflow.data.registry.context_of``);
    ``None`` when not conditional."""
    if not conditional:
        return None
    num_classes, context_dim = context_of(data)
    return ContextSpec(num_classes=num_classes, context_dim=context_dim)
