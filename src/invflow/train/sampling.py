"""Samples written from a model: PNG grids for images, density plots for 2D data; conditional
models draw the contexts of :mod:`invflow.train.grid_contexts` (one row per class by default)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.core.nonfinite import NonFiniteSamples, nonfinite_rows
from invflow.data.registry import is_toy
from invflow.data.toy2d import sample_toy2d_with_context
from invflow.storage import DiskFullError, write_atomic
from invflow.train.grid_contexts import GridContexts, grid_contexts
from invflow.viz.density2d import DensityRow, density_rows_png
from invflow.viz.grids import image_grid_png

TOY_SAMPLES = 2000  # model samples per density panel
TOY_DATA = 100_000  # data points per density panel
DEFAULT_VECTOR_CONTEXTS = 4  # rows of a vector-conditional toy's figure when no context is given


@torch.no_grad()
def write_samples(model: FlowModel, config: Config, path: Path, n: int, temperature: float = 1.0,
                  seed: int = 0, drop_nonfinite: bool = False,
                  contexts: GridContexts | None = None) -> Path | None:
    """Sample ``n`` points at ``temperature`` and write them to ``path`` (PNG), without touching
    the global RNG stream of a training run.

    ``contexts`` (``grid_contexts``) are the conditional model's contexts; without them a
    class-conditional model draws one row per class and a vector-conditional toy
    ``DEFAULT_VECTOR_CONTEXTS`` contexts drawn from its data.

    Non-finite samples are never drawn as pixels: ``NonFiniteSamples`` is raised before anything
    is written, or, with ``drop_nonfinite`` (training-time grids), a warning naming the count and
    the layer goes to stderr and only the finite samples are drawn (nothing, and ``None`` is
    returned, when none is finite; in a grid with one row per context the others are grey).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # e.g. a parent that is a file, or no permission: a one-line CLI error
        raise ValueError(f"cannot write samples to {path}: {err.strerror}: {err.filename}") from None
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if is_toy(config.data):
                return _write_density(model, config, path, n, temperature, seed, drop_nonfinite, contexts)
            contexts = contexts or grid_contexts(model, n)
            values = None if contexts.values is None else contexts.values.to(model.device)
            count = n if values is None else len(values)
            images = _sample(model, count, temperature, path, drop_nonfinite, values,
                             keep_rows=contexts.row_labels is not None)
            if images is None:
                return None
            # Show samples at the data's bit depth, as the model was trained on.
            levels = 2**config.data.n_bits
            images = torch.floor(images.clamp(0, 1 - 1e-6) * levels) / (levels - 1)
            return write_atomic(path, image_grid_png(images, contexts.nrow, contexts.row_labels))
    finally:
        model.train(was_training)


def repeat_context(context: Tensor | None, n: int) -> Tensor | None:
    """One context (a 0-dim label or a vector) repeated for ``n`` samples."""
    if context is None:
        return None
    return context.expand(n) if context.dim() == 0 else context.expand(n, -1)


def _toy_rows(model: FlowModel, config: Config, contexts: GridContexts | None, seed: int
              ) -> list[tuple[str, Tensor | None]]:
    """``(label, context)`` per row of a toy's density figure."""
    spec = model.context_spec
    if spec is None:
        return [("", None)]
    given = contexts is not None and contexts.values is not None
    if spec.is_class and given and contexts.nrow is None:  # --class K
        return [(f"class {int(contexts.values[0])}", contexts.values[0])]
    if spec.is_class:
        return [(f"class {c}", torch.tensor(c)) for c in range(spec.num_classes)]
    if given:  # --context
        return [(contexts.row_labels[0] if contexts.row_labels else "", contexts.values[0])]
    _, drawn = sample_toy2d_with_context(config.data.dataset, DEFAULT_VECTOR_CONTEXTS,
                                         torch.Generator().manual_seed(seed))
    return [("context " + ", ".join(f"{v:.2f}" for v in c.tolist()), c) for c in drawn]


def _write_density(model: FlowModel, config: Config, path: Path, n: int, temperature: float, seed: int,
                   drop_nonfinite: bool, contexts: GridContexts | None) -> Path | None:
    rows = []
    for label, context in _toy_rows(model, config, contexts, seed):
        m = max(n, TOY_SAMPLES)
        samples = _sample(model, m, temperature, path, drop_nonfinite, repeat_context(context, m))
        if samples is None:
            return None
        data, _ = sample_toy2d_with_context(config.data.dataset, TOY_DATA,
                                            torch.Generator().manual_seed(seed), given=context)

        def log_prob(points: Tensor, context: Tensor | None = context) -> Tensor:
            # the grid is built on the CPU; the model may be on a GPU
            return model.log_prob(points.to(model.device), repeat_context(context, points.shape[0]))

        rows.append(DensityRow(label, log_prob, samples, data))
    return write_atomic(path, density_rows_png(rows, title=config.name))


def _sample(model: FlowModel, n: int, temperature: float, path: Path, drop_nonfinite: bool,
            context: Tensor | None = None, keep_rows: bool = False) -> Tensor | None:
    try:
        return model.sample(n, context=context, temperature=temperature)
    except NonFiniteSamples as err:
        if not drop_nonfinite:
            raise
        finite_rows = ~nonfinite_rows(err.samples)
        shown = (f"{path} shows only the {int(finite_rows.sum())} finite ones" if bool(finite_rows.any())
                 else f"{path} is not written")
        warnings.warn(f"{err}; {shown}", RuntimeWarning, stacklevel=2)
        if not bool(finite_rows.any()):
            return None
        if keep_rows:  # rows stay aligned with their labels: non-finite samples are drawn grey
            return err.samples.clamp(0.0, 1.0)
        finite = err.samples[finite_rows]
        return finite if len(model.input_shape) != 3 else finite.clamp(0.0, 1.0)


def write_samples_or_warn(model: FlowModel, config: Config, path: Path, n: int, temperature: float = 1.0,
                          seed: int = 0) -> Path | None:
    """:func:`write_samples` during training (non-finite samples dropped with a warning): a full
    disk costs the picture (a warning), not the run."""
    try:
        return write_samples(model, config, path, n, temperature, seed, drop_nonfinite=True)
    except DiskFullError as err:
        warnings.warn(f"{err}; samples skipped, training goes on", RuntimeWarning, stacklevel=2)
        return None
