"""SVHN on tiny .mat files in the real format: MATLAB v5 with X (32, 32, 3, N) and y (N, 1) in 1..10."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from invflow.data import load_image_split, svhn

COUNTS = {"train": 6, "test": 4}


def _split_arrays(split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """X uint8 (32, 32, 3, N) and y uint8 (N, 1) with every label 10 (digit 0) present."""
    rng = np.random.default_rng(seed + (split == "test"))
    n = COUNTS[split]
    images = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    labels = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    labels[0, 0] = 10
    return images, labels


def write_mat(folder: Path, split: str, **variables: np.ndarray) -> Path:
    """``folder/<split file>`` as MATLAB v5, holding ``variables`` (default: the split's X and y)."""
    if not variables:
        images, labels = _split_arrays(split)
        variables = {"X": images, "y": labels}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / svhn.FILES[split]
    scipy.io.savemat(path, variables, do_compression=True)
    return path


def test_fake_file_is_matlab_v5(tmp_path: Path) -> None:
    path = write_mat(tmp_path, "test")
    assert path.read_bytes()[:10] == b"MATLAB 5.0"
    loaded = scipy.io.loadmat(path)
    assert loaded["X"].shape == (32, 32, 3, COUNTS["test"]) and loaded["y"].shape == (COUNTS["test"], 1)


def test_load_layout_and_labels(tmp_path: Path) -> None:
    for split in COUNTS:
        write_mat(tmp_path, split)
    train = load_image_split("svhn", "train", data_dir=str(tmp_path))
    images, labels = _split_arrays("train")
    assert train.images.shape == (COUNTS["train"], 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and train.num_classes == 10 and train.n_bits == 8
    # X[h, w, c, n] becomes images[n, c, h, w]
    assert np.array_equal(train.images[2, 1].numpy(), images[:, :, 1, 2])
    assert train.labels.tolist() == [0 if v == 10 else int(v) for v in labels[:, 0]]
    assert train.labels[0] == 0 and int(train.labels.max()) <= 9


def test_double_labels_resize_and_bits(tmp_path: Path) -> None:
    images, labels = _split_arrays("test")
    write_mat(tmp_path, "test", X=images, y=labels.astype(np.float64))
    test = load_image_split("svhn", "test", data_dir=str(tmp_path), image_size=16, n_bits=5)
    assert test.images.shape == (COUNTS["test"], 3, 16, 16) and int(test.images.max()) < 32
    assert test.labels.tolist() == [int(v) % 10 for v in labels[:, 0]]


@pytest.mark.parametrize("damage, message", [
    ("truncated", "not a readable MATLAB v5 file"),
    ("garbage", "not a readable MATLAB v5 file"),
    ("empty", "not a readable MATLAB v5 file"),
    ("no y", "not an SVHN file, variable 'y' missing"),
    ("X not uint8", r"'X' must be a uint8 array \(32, 32, 3, N\), got float64"),
    ("X wrong shape", r"'X' must be a uint8 array \(32, 32, 3, N\), got uint8 \(3, 32, 32, 4\)"),
    ("y wrong count", r"'y' must be \(4, 1\) integers in 1..10"),
    ("y out of range", r"'y' must be \(4, 1\) integers in 1..10"),
    ("y fractional", r"'y' must be \(4, 1\) integers in 1..10"),
])
def test_corrupt_file_is_named(tmp_path: Path, damage: str, message: str) -> None:
    images, labels = _split_arrays("test")
    variables = {
        "no y": {"X": images},
        "X not uint8": {"X": images.astype(np.float64), "y": labels},
        "X wrong shape": {"X": images.transpose(2, 0, 1, 3), "y": labels},
        "y wrong count": {"X": images, "y": labels[:3]},
        "y out of range": {"X": images, "y": labels + 1},  # label 10 becomes 11
        "y fractional": {"X": images, "y": labels + 0.5},
    }.get(damage, {})
    path = write_mat(tmp_path, "test", **variables)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-500])
    elif damage == "garbage":
        path.write_bytes(b"not a mat file " * 40)
    elif damage == "empty":
        path.write_bytes(b"")
    with pytest.raises(ValueError, match=f"test_32x32.mat: {message}"):
        load_image_split("svhn", "test", data_dir=str(tmp_path))


def test_missing_files(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train_32x32.mat not found; put train_32x32.mat"):
        load_image_split("svhn", "train", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download is disabled"):
        load_image_split("svhn", "test", download=False)


def test_cache_is_used_without_download(cache: Path) -> None:
    write_mat(cache / "svhn", "test")
    assert len(load_image_split("svhn", "test", download=False)) == COUNTS["test"]


def test_download_with_md5(tmp_path: Path, cache: Path, serve_mirror,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    path = write_mat(mirror, "test")
    serve_mirror(mirror)
    monkeypatch.setitem(svhn.FILE_MD5, "test_32x32.mat", "0" * 32)
    with pytest.raises(ValueError, match="checksum mismatch for test_32x32.mat: expected md5 0{32}"):
        load_image_split("svhn", "test")
    assert not (cache / "svhn").exists() or not any((cache / "svhn").iterdir())
    monkeypatch.setitem(svhn.FILE_MD5, "test_32x32.mat", hashlib.md5(path.read_bytes()).hexdigest())
    test = load_image_split("svhn", "test")
    assert len(test) == COUNTS["test"] and test.labels[0] == 0
    assert sorted(p.name for p in (cache / "svhn").iterdir()) == ["test_32x32.mat"]


def test_published_checksums() -> None:
    assert svhn.FILE_MD5 == {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
                             "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3"}
    assert set(svhn.FILES.values()) == set(svhn.FILE_MD5)
