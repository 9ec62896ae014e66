"""load_image_split: argument validation happens before any file is touched."""
from __future__ import annotations

import pytest

from invflow.data import IMAGE_DATASETS, ImageData, load_image_split


def test_dataset_names() -> None:
    assert tuple(IMAGE_DATASETS) == ("mnist", "cifar10", "svhn", "imagenet32", "imagenet64", "folder")
    assert [f for f in ImageData.__dataclass_fields__] == ["images", "labels", "n_bits", "num_classes"]


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "cifar"}, "unknown image data set 'cifar'; choose one of mnist, cifar10"),
    ({"dataset": "2moons"}, "toy sets are drawn with sample_toy2d"),
    ({"split": "val"}, "split must be 'train' or 'test', got 'val'"),
    ({"image_size": 0}, "image_size must be a positive integer or None, got 0"),
    ({"image_size": 16.0}, "image_size must be a positive integer"),
    ({"image_size": True}, "image_size must be a positive integer"),
    ({"n_bits": 0}, r"n_bits must be an integer in \[1, 8\], got 0"),
    ({"n_bits": 9}, r"n_bits must be an integer in \[1, 8\], got 9"),
])
def test_bad_arguments(kwargs: dict, message: str, cache) -> None:
    arguments = {"dataset": "mnist", "split": "train", "download": False} | kwargs
    with pytest.raises(ValueError, match=message):
        load_image_split(**arguments)
