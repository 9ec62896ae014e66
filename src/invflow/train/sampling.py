"""Samples written from a model: PNG grids for images, density plots for 2D data."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.core.nonfinite import NonFiniteSamples, nonfinite_rows
from invflow.data.registry import is_toy
from invflow.data.toy2d import sample_toy2d
from invflow.storage import DiskFullError, write_atomic
from invflow.viz.density2d import density_2d_png
from invflow.viz.grids import image_grid_png


@torch.no_grad()
def write_samples(model: FlowModel, config: Config, path: Path, n: int, temperature: float = 1.0,
                  seed: int = 0, drop_nonfinite: bool = False) -> Path | None:
    """Sample ``n`` points at ``temperature`` and write them to ``path`` (PNG), without touching
    the global RNG stream of a training run.

    Non-finite samples are never drawn as pixels: ``NonFiniteSamples`` is raised before anything
    is written, or, with ``drop_nonfinite`` (training-time grids), a warning naming the count and
    the layer goes to stderr and only the finite samples are drawn (nothing, and ``None`` is
    returned, when none is finite).
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
                samples = _sample(model, max(n, 2000), temperature, path, drop_nonfinite)
                if samples is None:
                    return None
                data = sample_toy2d(config.data.dataset, 100_000, torch.Generator().manual_seed(seed))
                return write_atomic(
                    path, density_2d_png(model.log_prob, samples, title=config.name, data=data)
                )
            images = _sample(model, n, temperature, path, drop_nonfinite)
            if images is None:
                return None
            # Show samples at the data's bit depth, as the model was trained on.
            levels = 2**config.data.n_bits
            images = torch.floor(images.clamp(0, 1 - 1e-6) * levels) / (levels - 1)
            return write_atomic(path, image_grid_png(images))
    finally:
        model.train(was_training)


def _sample(
    model: FlowModel, n: int, temperature: float, path: Path, drop_nonfinite: bool
) -> torch.Tensor | None:
    try:
        return model.sample(n, temperature)
    except NonFiniteSamples as err:
        if not drop_nonfinite:
            raise
        finite = err.samples[~nonfinite_rows(err.samples)]
        shown = (
            f"{path} shows only the {len(finite)} finite ones" if len(finite) else f"{path} is not written"
        )
        print(f"invflow: warning: {err}; {shown}", file=sys.stderr, flush=True)
        if len(finite) == 0:
            return None
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
