"""Samples written from a model: PNG grids for images, density plots for 2D data."""
from __future__ import annotations

from pathlib import Path

import torch

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.models.input_shape import is_toy
from invflow.viz.density2d import plot_density_2d
from invflow.viz.grids import save_image_grid


@torch.no_grad()
def write_samples(model: FlowModel, config: Config, path: Path, n: int, temperature: float = 1.0,
                  seed: int = 0) -> Path:
    """Sample ``n`` points at ``temperature`` and write them to ``path`` (PNG), without touching
    the global RNG stream of a training run."""
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
                samples = model.sample(max(n, 2000), temperature)
                return plot_density_2d(model.log_prob, path, samples, title=config.name)
            images = model.sample(n, temperature)
            # Show samples at the data's bit depth, as the model was trained on.
            levels = 2**config.data.n_bits
            images = torch.floor(images.clamp(0, 1 - 1e-6) * levels) / (levels - 1)
            return save_image_grid(images, path)
    finally:
        model.train(was_training)
