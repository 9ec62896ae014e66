"""Which contexts a conditional model's sample figure shows (docs/architecture.md, "Contexts").

A class-conditional image model draws one row per class (``--classes all``, the default of the
training-time grids) or a grid of one class (``--class K``); a model with vector contexts draws
the vector given (``--context "0.5,1.0"``). 2D toys draw one row of density panels per context.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from invflow.core.context import ContextSpec
from invflow.core.model import FlowModel

MAX_CONTEXT_ROWS = 16  # rows of a density figure, one per context


@dataclass
class GridContexts:
    """The contexts of the ``n`` samples of a figure: ``values`` (one per sample, or ``None`` for an
    unconditional model), the grid's row length ``nrow`` and a label per row (``None``: no labels)."""

    values: Tensor | None = None
    nrow: int | None = None
    row_labels: list[str] | None = None


def parse_context_vector(text: str, width: int) -> Tensor:
    """``"0.5,1.0"`` as a float vector of ``width`` entries, or a one-line ``ValueError``."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--context must be {width} comma-separated numbers, got {text!r}") from None
    if len(values) != width:
        raise ValueError(f"--context needs {width} comma-separated numbers for this model, got {len(values)}")
    if not all(torch.isfinite(torch.tensor(values))):
        raise ValueError(f"--context must be finite numbers, got {text!r}")
    return torch.tensor(values)


def check_class_index(spec: ContextSpec, class_index: int) -> None:
    """``--class K`` of a class-conditional model: a one-line ``ValueError`` unless K is one of its
    classes."""
    if not 0 <= class_index < spec.num_classes:
        raise ValueError(f"--class {class_index} is out of range: this model has classes "
                         f"0-{spec.num_classes - 1}")


def grid_contexts(model: FlowModel, n: int, class_index: int | None = None, all_classes: bool = False,
                  vector: str | None = None) -> GridContexts:
    """The contexts of ``n`` samples of ``model`` for the options of ``invflow sample``; with none
    given, a class-conditional model shows one row per class. Options that do not fit the model
    are one-line ``ValueError``s."""
    spec = model.context_spec
    chosen = [name for name, given in (("--class", class_index is not None), ("--classes", all_classes),
                                       ("--context", vector is not None)) if given]
    if len(chosen) > 1:
        raise ValueError(f"give one of --class, --classes and --context, not {' and '.join(chosen)}")
    if spec is None:
        if chosen:
            raise ValueError(f"{chosen[0]} needs a conditional model; this run's model is unconditional")
        return GridContexts()
    if spec.is_class:
        if vector is not None:
            raise ValueError(f"this model is conditioned on class labels 0-{spec.num_classes - 1}: "
                             "use --class K or --classes all, not --context")
        if class_index is not None:
            check_class_index(spec, class_index)
            return GridContexts(torch.full((n,), class_index, dtype=torch.long), None, None)
        per_class = max(1, n // spec.num_classes)
        labels = torch.arange(spec.num_classes).repeat_interleave(per_class)
        return GridContexts(labels, per_class, [f"class {c}" for c in range(spec.num_classes)])
    if class_index is not None or all_classes:
        raise ValueError(f"this model is conditioned on vectors of width {spec.context_dim}: use "
                         f"--context with {spec.context_dim} comma-separated numbers")
    if vector is None:
        raise ValueError(f"this model is conditioned on vectors of width {spec.context_dim}: give --context "
                         f"with {spec.context_dim} comma-separated numbers")
    value = parse_context_vector(vector, spec.context_dim)
    return GridContexts(value.expand(n, -1), None, [f"context {vector}"])
