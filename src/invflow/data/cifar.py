"""CIFAR-10 (Krizhevsky 2009) from the standard python version ``cifar-10-python.tar.gz``.

The batches are pickles written by Python 2. Unpickling can run arbitrary code, so they are read
with :class:`RestrictedUnpickler`, which resolves only the globals a real batch needs to rebuild
its numpy array and refuses everything else. Members are read straight from the tarball (or from
the extracted ``cifar-10-batches-py/`` folder); nothing is extracted to disk.
"""
from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
import torch

from invflow.data.download import cache_dir, download_verified, mirror_url

DEFAULT_MIRROR = "https://www.cs.toronto.edu/~kriz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
NUM_CLASSES = 10
_ROW = 3 * 32 * 32

# The only globals a CIFAR batch references: numpy's array reconstruction and its dtype.
_ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction; any other global is refused."""

    def find_class(self, module: str, name: str) -> object:
        """Resolve ``module.name`` if allowed, else raise ``pickle.UnpicklingError``."""
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a CIFAR-10 batch only holds numpy "
                "arrays, lists and strings, so this file is not a genuine batch"
            )
        return super().find_class(module, name)


def read_batch(stream: IO[bytes], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one pickled batch."""
    try:
        batch = RestrictedUnpickler(stream, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{name}: not a readable CIFAR-10 batch ({err})") from err
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise ValueError(f"{name}: not a CIFAR-10 batch (expected a dict with 'data' and 'labels')")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
        got = (data.dtype, data.shape) if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{name}: 'data' must be a uint8 array (N, {_ROW}), got {got}")
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu" or (
            labels.size and not 0 <= labels.min() <= labels.max() < NUM_CLASSES):
        raise ValueError(f"{name}: 'labels' must be {data.shape[0]} integers in 0..{NUM_CLASSES - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_folder(folder: Path, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    batches = []
    for member in BATCHES[split]:
        path = folder / member
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10 batch {path} not found; the folder is incomplete, "
                                    f"replace it with a fresh extraction of {ARCHIVE}")
        with open(path, "rb") as f:
            batches.append(read_batch(f, str(path)))
    return batches


def _read_archive(archive: Path, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    batches = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in BATCHES[split]:
                try:
                    stream = tar.extractfile(f"{FOLDER}/{member}")
                except KeyError:
                    stream = None
                if stream is None:
                    raise ValueError(f"{archive}: member {FOLDER}/{member} missing; "
                                     "the archive is incomplete, delete it and fetch it again")
                batches.append(read_batch(io.BytesIO(stream.read()), f"{archive}:{member}"))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise ValueError(f"{archive}: not a readable tar.gz archive ({err}); "
                         "delete it and fetch it again") from err
    return batches


def _read_from(folder: Path, split: str) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Batches from ``folder``'s extracted batches or tarball; None when it has neither."""
    for candidate in (folder / FOLDER, folder):
        if (candidate / BATCHES["test"][0]).is_file() or (candidate / "data_batch_1").is_file():
            return _read_folder(candidate, split)
    if (folder / ARCHIVE).is_file():
        return _read_archive(folder / ARCHIVE, split)
    return None


def load_cifar10(split: str, data_dir: str | None = None,
                 download: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """CIFAR-10 ``split`` as uint8 images ``(N, 3, 32, 32)``, int64 labels and 10 classes."""
    folder = Path(data_dir).expanduser() if data_dir is not None else cache_dir("cifar10")
    batches = _read_from(folder, split)
    if batches is None:
        if data_dir is not None or not download:
            raise FileNotFoundError(
                f"CIFAR-10 not found in {folder}: put {ARCHIVE} (or its extracted {FOLDER}/) there"
                + (", or enable download" if data_dir is None else ", or leave data_dir unset to download it")
            )
        download_verified(mirror_url(DEFAULT_MIRROR, ARCHIVE), folder / ARCHIVE, "md5", ARCHIVE_MD5)
        batches = _read_archive(folder / ARCHIVE, split)
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return torch.from_numpy(images), torch.from_numpy(labels), NUM_CLASSES
