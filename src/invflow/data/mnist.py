"""MNIST from the four standard IDX files (LeCun et al. 1998), gzip-compressed.

Lookup order: ``data_dir`` if given; else the cache (``$INVFLOW_CACHE/mnist``); else a download
into the cache from ``$INVFLOW_DATA_MIRROR`` (default: a public mirror), verified by the SHA-256
of the *decompressed* payload, so recompressed archives verify as well as the original ones.
Files in ``data_dir`` are checked for structure (magic number, dimensions, size), not for hash,
so any data set in the MNIST format (e.g. Fashion-MNIST) can be used from there.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from invflow.data.download import cache_dir, download_verified, mirror_url

DEFAULT_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist"
NUM_CLASSES = 10

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# SHA-256 of the decompressed IDX payloads.
PAYLOAD_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # unsigned bytes; 3 and 1 dimensions


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse a gzip-compressed IDX file of unsigned bytes; ValueError naming the file if malformed."""
    try:
        with gzip.open(path, "rb") as f:
            payload = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: not a readable gzip file ({err}); delete it and fetch it again") from err
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(payload) < header or int.from_bytes(payload[:4], "big") != magic:
        found = int.from_bytes(payload[:4], "big") if len(payload) >= 4 else None
        raise ValueError(f"{path}: not an IDX file with magic number {magic} (found {found})")
    dims = tuple(int.from_bytes(payload[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(payload) != expected:
        raise ValueError(
            f"{path}: header says dimensions {dims} ({expected} bytes) but the file has "
            f"{len(payload)} bytes; it is truncated or corrupt, delete it and fetch it again"
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(dims)


def _locate(split: str, data_dir: str | None, download_missing: bool) -> list[Path]:
    """Paths of the split's two files, downloading them into the cache when allowed."""
    names = FILES[split]
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"MNIST file {folder / missing[0]} not found; put the four *-ubyte.gz files in "
                f"{folder}, or leave data_dir unset to download them into the cache"
            )
        return [folder / n for n in names]
    folder = cache_dir("mnist")
    for name in names:
        if (folder / name).is_file():
            continue
        if not download_missing:
            raise FileNotFoundError(
                f"MNIST file {folder / name} not found and download is disabled; enable it, "
                "or pass data_dir with the four *-ubyte.gz files"
            )
        download_verified(mirror_url(DEFAULT_MIRROR, name), folder / name, "sha256", PAYLOAD_SHA256[name],
                          gunzip=True)
    return [folder / n for n in names]


def load_mnist(split: str, data_dir: str | None = None,
               download: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """MNIST ``split`` as uint8 images ``(N, 1, 28, 28)``, int64 labels ``(N,)`` and 10 classes."""
    images_path, labels_path = _locate(split, data_dir, download)
    images = read_idx(images_path, _IMAGES_MAGIC)
    labels = read_idx(labels_path, _LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels; the files do not belong together"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        raise ValueError(f"{labels_path}: label {labels.max()} outside 0..{NUM_CLASSES - 1}")
    return (torch.from_numpy(images.copy()).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)), NUM_CLASSES)
