"""The data-set registry: everything invflow knows about a data set, in one place.

An image data set has its channel count, native square size (``None``: set ``data.image_size``),
a loader ``load(split, data_dir, download, image_size, test_images=, split_seed=) -> (uint8
images, labels, classes)`` (the two split options matter to data sets without an official split),
its per-channel mean/std in [0, 1] (used by models that standardise their input), where it
comes from under which terms, and whether flips are a valid augmentation (not for digits).
2D toy densities are the samplers of ``invflow.data.toy2d``. Adding a data set is a loader
module plus one entry in ``IMAGE_DATASETS`` (docs/architecture.md, "Adding a data set").
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from invflow.config import DataConfig
from invflow.data.cifar import load_cifar10
from invflow.data.folder import class_folders, load_folder, test_file_names
from invflow.data.imagenet import load_imagenet
from invflow.data.mnist import load_mnist
from invflow.data.svhn import load_svhn
from invflow.data.toy2d import CONDITIONAL_SAMPLERS, TOY_DATASETS

Loader = Callable[
    ..., tuple[torch.Tensor, torch.Tensor, int]
]  # (split, data_dir, download, size, **split options)
TOY_DIMS = 2


@dataclass(frozen=True)
class ImageDataset:
    """One image data set (see the module docstring)."""

    channels: int
    native_size: int | None
    load: Loader
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    source: str
    license: str
    mirror_symmetric: bool = True  # random horizontal flips are a valid augmentation
    num_classes: int | None = None  # class labels a conditional model can be given


IMAGE_DATASETS: dict[str, ImageDataset] = {
    "mnist": ImageDataset(
        1,
        28,
        lambda split, data_dir, download, size, **_: load_mnist(split, data_dir, download),
        (0.1307,),
        (0.3081,),
        "http://yann.lecun.com/exdb/mnist/ (LeCun et al. 1998)",
        "CC BY-SA 3.0 (Y. LeCun and C. Cortes)",
        mirror_symmetric=False,
        num_classes=10,
    ),
    "cifar10": ImageDataset(
        3,
        32,
        lambda split, data_dir, download, size, **_: load_cifar10(split, data_dir, download),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        "https://www.cs.toronto.edu/~kriz/cifar.html (Krizhevsky 2009)",
        "no explicit license; the authors ask users to cite the tech report",
        num_classes=10,
    ),
    "svhn": ImageDataset(
        3,
        32,
        lambda split, data_dir, download, size, **_: load_svhn(split, data_dir, download),
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
        "http://ufldl.stanford.edu/housenumbers/ (Netzer et al. 2011)",
        "non-commercial use only",
        mirror_symmetric=False,
        num_classes=10,
    ),
    "imagenet32": ImageDataset(
        3,
        32,
        lambda split, data_dir, download, size, **_: load_imagenet(split, 32, data_dir),
        None,
        None,
        "https://image-net.org/download-images (Chrabaszcz et al. 2017; needs an account, never downloaded)",
        "ImageNet terms of access: non-commercial research and education",
    ),
    "imagenet64": ImageDataset(
        3,
        64,
        lambda split, data_dir, download, size, **_: load_imagenet(split, 64, data_dir),
        None,
        None,
        "https://image-net.org/download-images (Chrabaszcz et al. 2017; needs an account, never downloaded)",
        "ImageNet terms of access: non-commercial research and education",
    ),
    "folder": ImageDataset(
        3,
        None,
        lambda split, data_dir, download, size, **options: load_folder(split, data_dir, size, **options),
        None,
        None,
        "a folder of PNG/JPEG images given as data.data_dir (e.g. CelebA-HQ exported as images)",
        "the terms of the images in the folder",
    ),
}


def is_toy(data: DataConfig) -> bool:
    """Whether ``data.dataset`` names a 2D toy set rather than images."""
    return data.dataset not in IMAGE_DATASETS


def input_shape(data: DataConfig) -> tuple[int, ...]:
    """``(C, H, W)`` for image data sets, ``(2,)`` for 2D toy sets, known without loading the data."""
    if is_toy(data):
        if data.dataset not in TOY_DATASETS:
            known = ", ".join(sorted(IMAGE_DATASETS) + sorted(TOY_DATASETS))
            raise ValueError(f"unknown data.dataset {data.dataset!r}; known: {known}")
        return (TOY_DIMS,)
    entry = IMAGE_DATASETS[data.dataset]
    size = data.image_size or entry.native_size
    if size is None:
        raise ValueError(f"data.image_size must be set for data.dataset={data.dataset!r}")
    return (entry.channels, size, size)


def context_of(data: DataConfig) -> tuple[int | None, int | None]:
    """``(num_classes, None)`` for a labelled data set, ``(None, context_dim)`` for a toy with a vector
    context: what a conditional model of ``data`` is conditioned on; a ``ValueError`` naming the
    data sets that have one when ``data.dataset`` has none."""
    if data.dataset in CONDITIONAL_SAMPLERS:
        _, classes, width = CONDITIONAL_SAMPLERS[data.dataset]
        return classes, width
    entry = IMAGE_DATASETS.get(data.dataset)
    if entry is not None and entry.num_classes is not None:
        return entry.num_classes, None
    if data.dataset == "folder" and data.folder_labels:
        if data.data_dir is None:
            raise ValueError("data.folder_labels needs data.data_dir (or --data-dir): the class sub-folders "
                             "give the number of classes")
        return len(class_folders(Path(data.data_dir).expanduser())), None
    having = sorted([n for n, e in IMAGE_DATASETS.items() if e.num_classes] + list(CONDITIONAL_SAMPLERS))
    hint = "; an image folder has them with data.folder_labels: true" if data.dataset == "folder" else ""
    raise ValueError(f"model.conditional needs labels or contexts, and data.dataset={data.dataset!r} has "
                     f"none{hint}; "
                     f"data sets with them: {', '.join(having)}")


def needs_held_out_record(data: DataConfig) -> bool:
    """Whether ``data`` has no official test split, so a run records the files it holds out."""
    return data.dataset == "folder"


def held_out_files(data: DataConfig, data_dir: str | None) -> tuple[str, list[str]] | None:
    """For a data set without an official test split (an image folder): the rule that chose the
    test files and their paths relative to the folder; ``None`` for data sets with their own split."""
    if not needs_held_out_record(data):
        return None
    folder = data_dir or data.data_dir
    rule = ("last tenth of the sorted file names" if data.folder_test_images is None
            else f"{data.folder_test_images} files drawn at random with seed {data.folder_split_seed}")
    return rule, test_file_names(folder, data.folder_test_images, data.folder_split_seed)


def channel_stats(dataset: str, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``dataset``'s training images in [0, 1]; ``0.5 ± 0.25`` for a
    data set without published statistics."""
    entry = IMAGE_DATASETS.get(dataset)
    if entry is None or entry.mean is None or entry.std is None:
        return [0.5] * channels, [0.25] * channels
    return list(entry.mean), list(entry.std)
