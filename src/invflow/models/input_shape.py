"""The per-sample shape a data config produces, known without loading the data."""
from __future__ import annotations

from invflow.config import DataConfig

# (channels, native square size) of each image data set; "folder" has no native size.
IMAGE_FORMATS: dict[str, tuple[int, int | None]] = {
    "mnist": (1, 28),
    "cifar10": (3, 32),
    "svhn": (3, 32),
    "imagenet32": (3, 32),
    "imagenet64": (3, 64),
    "folder": (3, None),
}
TOY_DIMS = 2


def is_toy(data: DataConfig) -> bool:
    """Whether ``data.dataset`` names a 2D toy set rather than images."""
    return data.dataset not in IMAGE_FORMATS


def input_shape(data: DataConfig) -> tuple[int, ...]:
    """``(C, H, W)`` for image data sets, ``(2,)`` for 2D toy sets."""
    if is_toy(data):
        from invflow.data.toy2d import TOY_DATASETS

        if data.dataset not in TOY_DATASETS:
            known = ", ".join(sorted(IMAGE_FORMATS) + sorted(TOY_DATASETS))
            raise ValueError(f"unknown data.dataset {data.dataset!r}; known: {known}")
        return (TOY_DIMS,)
    channels, native = IMAGE_FORMATS[data.dataset]
    size = data.image_size or native
    if size is None:
        raise ValueError(f"data.image_size must be set for data.dataset={data.dataset!r}")
    return (channels, size, size)
