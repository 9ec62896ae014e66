"""Training batches as a pure function of (seed, step), so a resumed run sees the same data.

Image data: each epoch is a permutation drawn from a generator seeded by (seed, epoch); the
last incomplete batch is dropped. Toy data: fresh points drawn from a generator seeded by
(seed, step). Augmentations use a generator seeded the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from invflow.config import DataConfig


def derived_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded deterministically from integer keys."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


@dataclass
class Batch:
    """Model input (uint8 images or float vectors) and class labels (zeros for toy data)."""

    x: Tensor
    y: Tensor


class ImageBatches:
    """Shuffled mini-batches of an in-memory uint8 image tensor."""

    def __init__(self, images: Tensor, labels: Tensor, data: DataConfig, seed: int) -> None:
        if images.shape[0] < data.batch_size:
            raise ValueError(
                f"data.batch_size={data.batch_size} exceeds the {images.shape[0]} training images"
            )
        self.images, self.labels, self.data, self.seed = images, labels, data, seed
        self.per_epoch = images.shape[0] // data.batch_size
        self._epoch, self._perm = -1, None

    def batch(self, step: int) -> Batch:
        epoch, index = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._perm = torch.randperm(self.images.shape[0], generator=derived_generator(self.seed, 1, epoch))
            self._epoch = epoch
        idx = self._perm[index * self.data.batch_size : (index + 1) * self.data.batch_size]
        x = self.images[idx]
        if self.data.augment:
            from invflow.data.transforms import random_crop_reflect, random_flip

            gen = derived_generator(self.seed, 2, step)
            x = random_crop_reflect(x, padding=4, generator=gen)
            if self.data.dataset not in ("mnist", "svhn"):  # digits are not mirror-symmetric
                x = random_flip(x, generator=gen)
        return Batch(x, self.labels[idx])


class ToyBatches:
    """Fresh samples of a 2D toy density at every step."""

    def __init__(self, data: DataConfig, seed: int) -> None:
        self.data, self.seed = data, seed

    def batch(self, step: int) -> Batch:
        from invflow.data.toy2d import sample_toy2d

        x = sample_toy2d(self.data.dataset, self.data.batch_size, derived_generator(self.seed, 3, step))
        return Batch(x, torch.zeros(x.shape[0], dtype=torch.long))
