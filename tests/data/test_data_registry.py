"""One registry in data/ knows every data set: shape, loader, statistics, source and license."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import invflow
from invflow.config import DataConfig
from invflow.data.registry import IMAGE_DATASETS, channel_stats, input_shape, is_toy
from invflow.data.toy2d import TOY_DATASETS


@pytest.mark.parametrize("name", sorted(IMAGE_DATASETS))
def test_every_image_dataset_declares_shape_statistics_source_and_license(name: str) -> None:
    entry = IMAGE_DATASETS[name]
    assert entry.channels in (1, 3) and entry.source and entry.license and callable(entry.load)
    if entry.mean is not None:
        assert len(entry.mean) == len(entry.std) == entry.channels and min(entry.std) > 0
    size = entry.native_size or 16
    assert input_shape(DataConfig(dataset=name, image_size=size)) == (entry.channels, size, size)
    assert not is_toy(DataConfig(dataset=name))


def test_native_size_and_errors() -> None:
    assert input_shape(DataConfig(dataset="mnist")) == (1, 28, 28)
    assert input_shape(DataConfig(dataset="imagenet64", image_size=32)) == (3, 32, 32)
    assert all(input_shape(DataConfig(dataset=t)) == (2,) for t in TOY_DATASETS)
    with pytest.raises(ValueError, match="data.image_size must be set for data.dataset='folder'"):
        input_shape(DataConfig(dataset="folder"))
    with pytest.raises(ValueError, match="unknown data.dataset 'nope'; known: cifar10"):
        input_shape(DataConfig(dataset="nope"))


def test_channel_statistics_fall_back_to_half_and_quarter() -> None:
    assert channel_stats("mnist", 1) == ([0.1307], [0.3081])
    assert channel_stats("folder", 3) == ([0.5] * 3, [0.25] * 3)


def test_no_module_outside_data_names_a_data_set() -> None:
    """Data-set knowledge lives in data/ only: no string literal elsewhere in the package is the
    name of a registered data set (configs in YAML presets are data, not code)."""
    root = Path(invflow.__file__).parent
    names = set(IMAGE_DATASETS) | set(TOY_DATASETS)
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in ("data", "config.py"):  # config: DataConfig's default
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r}")
    assert not found, found
