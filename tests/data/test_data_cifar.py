"""CIFAR-10 on tiny tarballs in the real format: Python-2 pickles with numpy arrays inside."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from invflow.data import cifar, load_image_split

TRAIN_PER_BATCH, TEST_COUNT = 3, 4


def _py2_str(value: bytes) -> bytes:
    """A Python 2 ``str`` as cPickle writes it (SHORT_BINSTRING / BINSTRING)."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<i", len(value)) + value


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def py2_batch_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR batch dict pickled the way the published files are: Python 2 cPickle, protocol 2,
    with the uint8 array rebuilt by ``numpy.core.multiarray._reconstruct`` and its bytes a str."""
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + _int(0) + _int(1) + b"\x87R"  # dtype('u1', 0, 1)
             + b"(" + _int(3) + _py2_str(b"|") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
             + _int(0) + b"\x85" + _py2_str(b"b") + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
             + b"(" + _int(1) + _int(data.shape[0]) + _int(data.shape[1]) + b"\x86" + dtype
             + b"\x89" + _py2_str(data.tobytes()) + b"tb")  # state (1, shape, dtype, False, raw)
    label_list = b"](" + b"".join(_int(v) for v in labels) + b"e"
    names = b"](" + b"".join(_py2_str(f"img_{i}.png".encode()) for i in range(len(labels))) + b"e"
    return (b"\x80\x02}(" + _py2_str(b"batch_label") + _py2_str(b"a fake batch")
            + _py2_str(b"labels") + label_list + _py2_str(b"data") + array
            + _py2_str(b"filenames") + names + b"u.")


def _batches(seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    counts = {f"data_batch_{i}": TRAIN_PER_BATCH for i in range(1, 6)} | {"test_batch": TEST_COUNT}
    return {name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
            for name, n in counts.items()}


def write_tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def _members(batches: dict[str, tuple[np.ndarray, list[int]]]) -> dict[str, bytes]:
    return {name: py2_batch_pickle(*batch) for name, batch in batches.items()}


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def test_fake_batch_is_a_real_py2_pickle() -> None:
    data, labels = _batches()["test_batch"]
    batch = pickle.loads(py2_batch_pickle(data, labels), encoding="latin1")
    assert np.array_equal(batch["data"], data) and batch["labels"] == labels


def test_tarball_train_and_test(tmp_path: Path) -> None:
    batches = _batches()
    write_tarball(tmp_path / cifar.ARCHIVE, _members(batches))
    train = load_image_split("cifar10", "train", data_dir=str(tmp_path))
    assert train.images.shape == (5 * TRAIN_PER_BATCH, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.num_classes == 10 and train.labels.dtype == torch.int64
    assert train.labels.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    first = batches["data_batch_1"][0][0]  # rows are R, G, B planes of 32x32
    assert np.array_equal(train.images[0, 1].numpy(), first[1024:2048].reshape(32, 32))
    test = load_image_split("cifar10", "test", data_dir=str(tmp_path), image_size=16, n_bits=5)
    assert test.images.shape == (TEST_COUNT, 3, 16, 16) and int(test.images.max()) < 32
    assert test.labels.tolist() == batches["test_batch"][1]


def test_extracted_folder(tmp_path: Path) -> None:
    batches = _batches(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, payload in _members(batches).items():
        (folder / name).write_bytes(payload)
    for data_dir in (tmp_path, folder):
        test = load_image_split("cifar10", "test", data_dir=str(data_dir))
        assert np.array_equal(test.images.flatten(1).numpy(), batches["test_batch"][0])
    (folder / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4 not found"):
        load_image_split("cifar10", "train", data_dir=str(tmp_path))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "exploited"
    members = _members(_batches())
    members["test_batch"] = pickle.dumps({"data": _Exploit(marker), "labels": []}, protocol=2)
    write_tarball(tmp_path / cifar.ARCHIVE, members)
    with pytest.raises(ValueError, match=r"test_batch.*refusing to load global (posix|os|nt)\.system"):
        load_image_split("cifar10", "test", data_dir=str(tmp_path))
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated archive", "missing member", "garbage batch", "bad labels"])
def test_corrupt_archives(tmp_path: Path, damage: str) -> None:
    batches = _batches()
    members = _members(batches)
    if damage == "missing member":
        del members["data_batch_2"]
    elif damage == "garbage batch":
        members["data_batch_2"] = members["data_batch_2"][:500]
    elif damage == "bad labels":
        data, labels = batches["data_batch_2"]
        members["data_batch_2"] = py2_batch_pickle(data, [10] * len(labels))
    archive = write_tarball(tmp_path / cifar.ARCHIVE, members)
    if damage == "truncated archive":
        archive.write_bytes(archive.read_bytes()[:-200])
    expected = {"truncated archive": "not a readable tar.gz", "missing member": "data_batch_2 missing",
                "garbage batch": "data_batch_2: not a readable CIFAR-10 batch",
                "bad labels": "data_batch_2: 'labels' must be"}[damage]
    with pytest.raises(ValueError, match=expected):
        load_image_split("cifar10", "train", data_dir=str(tmp_path))


def test_missing_files(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        load_image_split("cifar10", "train", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="enable download"):
        load_image_split("cifar10", "train", download=False)


def test_download_with_md5(tmp_path: Path, cache: Path, serve_mirror,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = write_tarball(mirror / cifar.ARCHIVE, _members(_batches()))
    serve_mirror(mirror)
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", "0" * 32)
    with pytest.raises(ValueError, match=f"checksum mismatch for {cifar.ARCHIVE}: expected md5 0{{32}}"):
        load_image_split("cifar10", "test")
    assert not (cache / "cifar10").exists() or not any((cache / "cifar10").iterdir())
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    assert len(load_image_split("cifar10", "test")) == TEST_COUNT
    assert sorted(p.name for p in (cache / "cifar10").iterdir()) == [cifar.ARCHIVE]
