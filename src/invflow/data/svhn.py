"""SVHN cropped digits (Netzer et al. 2011) from the standard ``train_32x32.mat`` / ``test_32x32.mat``.

Each file is a MATLAB v5 file holding ``X`` uint8 ``(32, 32, 3, N)`` (height, width, channel,
image) and ``y`` ``(N, 1)`` with labels 1..10, where 10 stands for the digit 0; they are read
with :func:`scipy.io.loadmat`. Lookup order: ``data_dir`` if given; else the cache
(``$INVFLOW_CACHE/svhn``); else a download into the cache from ``$INVFLOW_DATA_MIRROR`` (default:
the data set's home page), verified by the published MD5. Files in ``data_dir`` are checked for
structure, not for hash.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from invflow.data.download import cache_dir, download_verified, mirror_url

DEFAULT_MIRROR = "http://ufldl.stanford.edu/housenumbers"
FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
FILE_MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}
NUM_CLASSES = 10
_IMAGE_SHAPE = (32, 32, 3)
# What scipy's MATLAB reader raises on truncated, garbled or non-v5 (e.g. v7.3/HDF5) files
# (scipy.io.matlab.MatReadError too, added where scipy is imported).
_READ_ERRORS = (ValueError, TypeError, IndexError, OSError, EOFError, zlib.error, NotImplementedError)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 in 0..9 of one SVHN ``.mat`` file.

    Label 10 (SVHN's code for the digit 0) becomes 0. ValueError naming the file if it cannot be
    parsed or its ``X`` / ``y`` are missing or misshapen.
    """
    import scipy.io  # here, not at import: importing invflow.data (or the model code) needs no scipy
    from scipy.io.matlab import MatReadError

    try:
        contents = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (MatReadError, *_READ_ERRORS) as err:
        raise ValueError(f"{path}: not a readable MATLAB v5 file ({err}); it is truncated or "
                         "corrupt, delete it and fetch it again") from err
    missing = [key for key in ("X", "y") if key not in contents]
    if missing:
        raise ValueError(f"{path}: not an SVHN file, variable {missing[0]!r} missing "
                         "(expected 'X' and 'y')")
    images, labels = contents["X"], contents["y"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != _IMAGE_SHAPE:
        raise ValueError(f"{path}: 'X' must be a uint8 array (32, 32, 3, N), "
                         f"got {images.dtype} {images.shape}")
    count = images.shape[3]
    # MATLAB may store the labels as doubles; only whole numbers 1..10 are digits.
    if (labels.shape != (count, 1) or labels.dtype.kind not in "iuf"
            or not np.all((labels >= 1) & (labels <= NUM_CLASSES) & (labels == np.round(labels)))):
        raise ValueError(f"{path}: 'y' must be ({count}, 1) integers in 1..{NUM_CLASSES} "
                         f"(10 for the digit 0), got {labels.dtype} {labels.shape}")
    digits = labels[:, 0].astype(np.int64) % NUM_CLASSES
    return np.ascontiguousarray(images.transpose(3, 2, 0, 1)), digits


def _locate(split: str, data_dir: str | None, download_missing: bool) -> Path:
    """Path of the split's ``.mat`` file, downloading it into the cache when allowed."""
    name = FILES[split]
    if data_dir is not None:
        path = Path(data_dir).expanduser() / name
        if not path.is_file():
            raise FileNotFoundError(f"SVHN file {path} not found; put {name} there, "
                                    "or leave data_dir unset to download it into the cache")
        return path
    path = cache_dir("svhn") / name
    if path.is_file():
        return path
    if not download_missing:
        raise FileNotFoundError(f"SVHN file {path} not found and download is disabled; "
                                f"enable it, or pass data_dir with {name}")
    return download_verified(mirror_url(DEFAULT_MIRROR, name), path, "md5", FILE_MD5[name])


def load_svhn(split: str, data_dir: str | None = None,
              download: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """SVHN ``split`` as uint8 images ``(N, 3, 32, 32)``, int64 labels ``(N,)`` and 10 classes."""
    images, labels = read_svhn_mat(_locate(split, data_dir, download))
    return torch.from_numpy(images), torch.from_numpy(labels), NUM_CLASSES
