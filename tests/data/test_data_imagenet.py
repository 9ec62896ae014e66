"""Downsampled ImageNet on small npz batches made in the published format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from invflow.data import load_image_split
from invflow.data.imagenet import FILES


def write_split(folder: Path, size: int, per_file: int = 2, seed: int = 0) -> dict[str, tuple]:
    """Write every train batch and val_data.npz for ``size``; returns their arrays by file name."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in FILES["train"] + FILES["test"]:
        data = rng.integers(0, 256, (per_file, 3 * size * size), dtype=np.uint8)
        labels = rng.integers(1, 1001, per_file)
        np.savez(folder / name, data=data, labels=labels, mean=np.zeros(3 * size * size))
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("size", [32, 64])
def test_train_and_val(tmp_path: Path, size: int) -> None:
    written = write_split(tmp_path, size)
    train = load_image_split(f"imagenet{size}", "train", data_dir=str(tmp_path))
    assert train.images.shape == (20, 3, size, size) and train.images.dtype == torch.uint8
    assert train.num_classes == 1000 and train.labels.dtype == torch.int64
    expected = np.concatenate([written[name][1] for name in FILES["train"]]) - 1
    assert train.labels.tolist() == expected.tolist()
    data = written["train_data_batch_1.npz"][0]
    assert np.array_equal(train.images[0, 2].numpy(), data[0, 2 * size * size:].reshape(size, size))
    val = load_image_split(f"imagenet{size}", "test", data_dir=str(tmp_path), image_size=8, n_bits=5)
    assert val.images.shape == (2, 3, 8, 8) and int(val.images.max()) < 32


def test_cache_folder_and_missing_files(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(FileNotFoundError, match="imagenet32.*not downloaded automatically"):
        load_image_split("imagenet32", "test")
    write_split(cache / "imagenet32", 32)
    assert len(load_image_split("imagenet32", "test")) == 2
    (cache / "imagenet32" / "train_data_batch_7.npz").unlink()
    with pytest.raises(FileNotFoundError, match="train_data_batch_7.npz not found"):
        load_image_split("imagenet32", "train")


def test_wrong_resolution(tmp_path: Path) -> None:
    write_split(tmp_path, 64)
    with pytest.raises(ValueError, match=r"val_data.npz: 'data' must be uint8 of shape \(N, 3072\)"):
        load_image_split("imagenet32", "test", data_dir=str(tmp_path))


@pytest.mark.parametrize("damage", ["truncated", "not npz", "pickled objects", "no labels", "label 0"])
def test_corrupt_batches(tmp_path: Path, damage: str) -> None:
    write_split(tmp_path, 32)
    path = tmp_path / "val_data.npz"
    data = np.zeros((2, 3072), dtype=np.uint8)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "not npz":
        path.write_bytes(b"this is not a zip archive")
    elif damage == "pickled objects":
        np.savez(path, data=np.array([{"x": 1}, None], dtype=object), labels=np.ones(2, int))
    elif damage == "no labels":
        np.savez(path, data=data)
    else:
        np.savez(path, data=data, labels=np.array([0, 5]))
    expected = {"no labels": "'labels' missing", "label 0": r"integers in 1\.\.1000"}.get(
        damage, "not a readable npz file")
    with pytest.raises(ValueError, match=f"val_data.npz.*{expected}"):
        load_image_split("imagenet32", "test", data_dir=str(tmp_path))
