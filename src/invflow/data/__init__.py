"""Data sets: image splits held in memory as uint8 tensors, and 2D toy densities.

``load_image_split`` is the one entry point for images; it validates its arguments, reads the
data set's native images, resizes them when ``image_size`` differs, and reduces them to
``n_bits``. Images stay integers in ``[0, 2**n_bits)``; ``dequantize`` (in this package) makes
them continuous (docs/architecture.md section 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from invflow.config import check_n_bits
from invflow.data.batch import Batch
from invflow.data.dequantize import dequantize
from invflow.data.held_out import HeldOutSet
from invflow.data.registry import IMAGE_DATASETS, ImageDataset, channel_stats, input_shape, is_toy
from invflow.data.toy2d import TOY_DATASETS, sample_toy2d
from invflow.data.transforms import (
    random_crop_reflect,
    random_flip,
    reduce_bits,
    resize_images,
)

__all__ = [
    "Batch", "IMAGE_DATASETS", "ImageData", "ImageDataset", "TOY_DATASETS", "channel_stats", "dequantize",
    "input_shape", "is_toy", "load_image_split", "random_crop_reflect", "random_flip", "reduce_bits",
    "resize_images", "sample_toy2d",
]

SPLITS = ("train", "test")


@dataclass
class ImageData:
    """One split in memory: uint8 ``images`` (N, C, H, W) in ``[0, 2**n_bits)``, int64 ``labels``
    (N,) (zeros for unlabelled data sets), and the number of classes."""

    images: torch.Tensor
    labels: torch.Tensor
    n_bits: int
    num_classes: int

    def __len__(self) -> int:
        return self.images.shape[0]


def _check_arguments(dataset: str, split: str, image_size: int | None, n_bits: int) -> None:
    if dataset not in IMAGE_DATASETS:
        hint = " (toy sets are drawn with sample_toy2d)" if dataset in TOY_DATASETS else ""
        raise ValueError(
            f"unknown image data set {dataset!r}{hint}; choose one of {', '.join(IMAGE_DATASETS)}"
        )
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
    check_n_bits(n_bits)


def load_image_split(dataset: str, split: str, data_dir: str | None = None,
                     image_size: int | None = None, n_bits: int = 8,
                     download: bool = True, folder_test_images: int | None = None,
                     folder_split_seed: int = 0, folder_labels: bool = False,
                     folder_held_out: HeldOutSet | None = None) -> ImageData:
    """Load ``split`` ("train" or "test") of ``dataset`` (a key of ``IMAGE_DATASETS``) into memory.

    ``data_dir`` holds the files in their standard format; when None, the cache
    (``$INVFLOW_CACHE`` or ``~/.cache/invflow``) is used, and MNIST / CIFAR-10 / SVHN are downloaded
    into it with checksum verification if ``download``. For downsampled ImageNet, ``test`` is
    the validation set. ``image_size`` None keeps the native size. Image folders hold out the
    last tenth of their sorted files, or ``folder_test_images`` files drawn with
    ``folder_split_seed``, or, for a run that recorded them, exactly ``folder_held_out``
    (``invflow.data.held_out``); ``folder_labels`` labels each image by its class sub-folder. Missing
    files raise FileNotFoundError, malformed files and bad
    arguments ValueError, each naming what to fix.
    """
    _check_arguments(dataset, split, image_size, n_bits)
    images, labels, num_classes = IMAGE_DATASETS[dataset].load(
        split, data_dir, download, image_size, test_images=folder_test_images, split_seed=folder_split_seed,
        labels=folder_labels, held_out=folder_held_out)
    if image_size is not None:
        images = resize_images(images, image_size)
    return ImageData(reduce_bits(images, n_bits), labels, n_bits, num_classes)
