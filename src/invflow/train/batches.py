"""Training batches as a pure function of (seed, step), so a resumed run sees the same data.

Image data: each epoch is a permutation drawn from a generator seeded by (seed, epoch); the
last incomplete global batch is dropped. Toy data: fresh points drawn from a generator seeded
by (seed, step, rank). Augmentations use a generator seeded the same way. Under DDP a step's
global batch is ``world_size × data.batch_size`` and process ``r`` takes the ``r``-th slice.
"""
from __future__ import annotations

import warnings
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import Tensor

from invflow.config import DataConfig
from invflow.data.batch import Batch
from invflow.data.registry import IMAGE_DATASETS
from invflow.data.toy2d import sample_toy2d_with_context
from invflow.data.transforms import random_crop_reflect, random_flip
from invflow.train.distributed import DistContext


def derived_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded deterministically from integer keys."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class ImageBatches:
    """Shuffled mini-batches of an in-memory uint8 image tensor."""

    def __init__(self, images: Tensor, labels: Tensor, data: DataConfig, seed: int,
                 world: DistContext = DistContext()) -> None:
        global_batch = data.batch_size * world.world_size
        if images.shape[0] < global_batch:
            raise ValueError(
                f"a global batch of {global_batch} (data.batch_size x processes) exceeds the "
                f"{images.shape[0]} training images"
            )
        if data.crop >= min(images.shape[-2:]):
            raise ValueError(
                f"data.crop={data.crop} (reflection padding) must be smaller than the image size "
                f"{images.shape[-2]}x{images.shape[-1]}"
            )
        entry = IMAGE_DATASETS.get(data.dataset)
        if data.flip and entry is not None and not entry.mirror_symmetric:
            warnings.warn(
                f"data.flip=true on {data.dataset!r}, whose images are not mirror-symmetric (digits)",
                stacklevel=2,
            )
        self.images, self.labels, self.data, self.seed, self.world = images, labels, data, seed, world
        self.per_epoch = images.shape[0] // global_batch
        self._epoch, self._perm = -1, None

    def batch(self, step: int) -> Batch:
        epoch, index = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._perm = torch.randperm(
                self.images.shape[0], generator=derived_generator(self.seed, 1, epoch)
            )
            self._epoch = epoch
        start = (index * self.world.world_size + self.world.rank) * self.data.batch_size
        idx = self._perm[start : start + self.data.batch_size]
        x = self.images[idx]
        if self.data.crop or self.data.flip:  # Chen et al. 2019, app. E "Preprocessing"
            gen = derived_generator(self.seed, 2, step, self.world.rank)
            if self.data.crop:
                x = random_crop_reflect(x, padding=self.data.crop, generator=gen)
            if self.data.flip:
                x = random_flip(x, generator=gen)
        return Batch(x, self.labels[idx])


class ToyBatches:
    """Fresh samples of a 2D toy density at every step."""

    def __init__(self, data: DataConfig, seed: int, world: DistContext = DistContext()) -> None:
        if data.flip or data.crop:
            raise ValueError(
                f"data.flip and data.crop apply to images; {data.dataset!r} is a 2D toy data set"
            )
        self.data, self.seed, self.rank = data, seed, world.rank

    def batch(self, step: int) -> Batch:
        x, context = sample_toy2d_with_context(
            self.data.dataset, self.data.batch_size, derived_generator(self.seed, 3, step, self.rank)
        )
        return Batch(x, context)


class Prefetcher:
    """Prepares the next ``depth`` steps' batches in a background thread while the current step
    trains, pinning them in page-locked memory for asynchronous copies to a GPU.

    Batches are a pure function of the step, so prefetching changes nothing but timing. One
    worker thread keeps the sources' per-epoch caches single-threaded.
    """

    def __init__(self, source: ImageBatches | ToyBatches, depth: int, pin_memory: bool) -> None:
        self.source, self.depth, self.pin_memory = source, depth, pin_memory
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="invflow-batches")
        self._pending: dict[int, Future] = {}

    def _load(self, step: int) -> Batch:
        batch = self.source.batch(step)
        if self.pin_memory:
            return Batch(batch.x.pin_memory(), batch.y.pin_memory())
        return batch

    def batch(self, step: int) -> Batch:
        for ahead in range(step, step + self.depth + 1):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(self._load, ahead)
        for stale in [s for s in self._pending if s < step]:
            self._pending.pop(stale).cancel()
        return self._pending.pop(step).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
