"""Evaluation: the objective's per-sample value over a held-out split, mean ± standard error."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.models.input_shape import is_toy
from invflow.train.batches import Batch, derived_generator
from invflow.train.objectives import ImageBitsPerDim, Objective, VectorBits, to_device


def make_objective(config: Config) -> Objective:
    """The objective matching the config's data (bits/dim for images, bits for 2D toys)."""
    return VectorBits() if is_toy(config.data) else ImageBitsPerDim(config.data.n_bits)


def load_split(config: Config, split: str, data_dir: str | None = None):
    """The ``ImageData`` of an image config's split (``data_dir`` overrides ``data.data_dir``)."""
    from invflow.data import load_image_split

    d = config.data
    return load_image_split(d.dataset, split, data_dir or d.data_dir, d.image_size, d.n_bits)


def held_out_batches(config: Config, images=None, limit: int | None = None) -> Iterator[Batch]:
    """Fixed evaluation batches: the test images in order, or a fixed sample of a toy density."""
    batch_size = config.data.batch_size
    if images is None:
        from invflow.data.toy2d import sample_toy2d

        points = sample_toy2d(config.data.dataset, config.data.toy_samples, derived_generator(config.train.seed, 4))
        labels = torch.zeros(points.shape[0], dtype=torch.long)
        source = (points, labels)
    else:
        source = (images.images, images.labels)
    n_batches = math.ceil(source[0].shape[0] / batch_size)
    for i in range(n_batches if limit is None else min(limit, n_batches)):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        yield Batch(source[0][sl], source[1][sl])


@dataclass
class EvalResult:
    """Mean of the metric over samples, its standard error, and the sample count."""

    metric: str
    mean: float
    stderr: float
    count: int

    def as_dict(self) -> dict[str, float]:
        return {self.metric: self.mean, f"{self.metric}_stderr": self.stderr, "count": self.count}

    def __str__(self) -> str:
        return f"{self.metric} {self.mean:.4f} ± {self.stderr:.4f} (standard error over {self.count} samples)"


@torch.no_grad()
def evaluate(model: FlowModel, objective: Objective, batches: Iterator[Batch], device: torch.device,
             seed: int = 0) -> EvalResult:
    """Average ``objective.per_sample`` in eval mode; the dequantization noise is drawn from
    ``seed`` in a forked RNG, so evaluation is reproducible and leaves training's RNG alone."""
    was_training = model.training
    model.eval()
    values = []
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for batch in batches:
                values.append(objective.per_sample(model, to_device(batch, device)).double().cpu())
    finally:
        model.train(was_training)
    if not values:
        raise ValueError("evaluation got no data")
    v = torch.cat(values)
    stderr = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return EvalResult(objective.metric, float(v.mean()), stderr, len(v))
