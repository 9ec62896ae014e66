"""Downsampled ImageNet 32x32 / 64x64 (Chrabaszcz et al. 2017) in its npz batch format.

Train: ``train_data_batch_1.npz`` ... ``train_data_batch_10.npz``; test: ``val_data.npz``. Each
holds ``data`` (N, 3*s*s) uint8, rows laid out as R, G, B planes, and ``labels`` in 1..1000.
The files need an image-net.org account, so they are never downloaded: they are read from
``data_dir`` or the cache (``$INVFLOW_CACHE/imagenet32`` or ``imagenet64``), with
``allow_pickle=False`` so that a file can never run code.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from invflow.data.download import cache_dir

NUM_CLASSES = 1000
TRAIN_BATCHES = 10
FILES = {
    "train": tuple(f"train_data_batch_{i}.npz" for i in range(1, TRAIN_BATCHES + 1)),
    "test": ("val_data.npz",),
}


def read_npz_batch(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, size, size)`` uint8 and 0-based int64 labels of one npz batch."""
    try:
        batch = np.load(path, allow_pickle=False)
        if not isinstance(batch, np.lib.npyio.NpzFile):
            raise ValueError("a plain .npy array, not an npz archive")
        with batch:
            arrays = {key: batch[key] for key in ("data", "labels") if key in batch.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as err:
        raise ValueError(f"{path}: not a readable npz file ({err}); fetch it again") from err
    missing = [key for key in ("data", "labels") if key not in arrays]
    if missing:
        raise ValueError(f"{path}: array {missing[0]!r} missing; expected 'data' and 'labels' "
                         "(the downsampled-ImageNet npz format)")
    data, labels = arrays["data"], arrays["labels"]
    row = 3 * size * size
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
        raise ValueError(
            f"{path}: 'data' must be uint8 of shape (N, {row}) for {size}x{size} images, got "
            f"{data.dtype} {data.shape}; is it from the other resolution?"
        )
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu" or (
            labels.size and not 1 <= labels.min() <= labels.max() <= NUM_CLASSES):
        raise ValueError(f"{path}: 'labels' must be {data.shape[0]} integers in 1..{NUM_CLASSES}")
    return data.reshape(-1, 3, size, size), labels.astype(np.int64) - 1


def load_imagenet(split: str, size: int,
                  data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Downsampled ImageNet ``split`` at ``size`` (32 or 64): uint8 images, labels 0..999, 1000."""
    folder = Path(data_dir).expanduser() if data_dir is not None else cache_dir(f"imagenet{size}")
    paths = [folder / name for name in FILES[split]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"ImageNet{size} file {missing[0]} not found ({len(missing)} missing); it is not "
            f"downloaded automatically: get Imagenet{size}_train_npz / Imagenet{size}_val_npz from "
            f"image-net.org and put train_data_batch_1..{TRAIN_BATCHES}.npz and val_data.npz in {folder}"
        )
    batches = [read_npz_batch(p, size) for p in paths]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return torch.from_numpy(images), torch.from_numpy(labels), NUM_CLASSES
