"""MNIST: the real files, the real download path over loopback HTTP, and malformed files."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
import torch

from invflow.data import load_image_split, reduce_bits, resize_images
from invflow.data.mnist import PAYLOAD_SHA256

TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture
def mirrored(mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    """The real files a mirror serves and the payload checksums the downloader must verify: the
    full files and invflow's own table, or on a bare clone the committed subset with its checksums
    (from its README) put in that table's place."""
    if mnist_dir.name != "mnist-subset":
        return mnist_dir, PAYLOAD_SHA256
    listed = [line.split() for line in (mnist_dir / "README.md").read_text().splitlines()
              if line.endswith(".gz") and len(line.split()) == 3]
    checksums = {name: digest for digest, _, name in listed}
    assert set(checksums) == set(PAYLOAD_SHA256)
    for name, digest in checksums.items():
        monkeypatch.setitem(PAYLOAD_SHA256, name, digest)
    return mnist_dir, checksums


def _mirror_with(tmp_path: Path, source_dir: Path, replaced: str, content: bytes) -> Path:
    """A mirror folder: links to the real files, except ``replaced`` which holds ``content``."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for source in source_dir.glob("*.gz"):
        (mirror / source.name).symlink_to(source)
    (mirror / replaced).unlink()
    (mirror / replaced).write_bytes(content)
    return mirror


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_real_train_split(full_mnist_dir: Path) -> None:
    data = load_image_split("mnist", "train", data_dir=str(full_mnist_dir))
    assert data.images.shape == (60000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.shape == (60000,) and data.labels.dtype == torch.int64
    assert data.labels.bincount().tolist() == TRAIN_LABEL_COUNTS
    assert (data.n_bits, data.num_classes, len(data)) == (8, 10, 60000)
    assert data.images.max() == 255 and data.images.min() == 0


def test_real_test_split_resized_and_reduced(full_mnist_dir: Path) -> None:
    native = load_image_split("mnist", "test", data_dir=str(full_mnist_dir))
    assert native.images.shape == (10000, 1, 28, 28) and native.labels.bincount().sum() == 10000
    for size in (16, 32):
        small = load_image_split("mnist", "test", data_dir=str(full_mnist_dir), image_size=size, n_bits=5)
        assert small.images.shape == (10000, 1, size, size) and small.images.dtype == torch.uint8
        assert int(small.images.max()) == 31 and small.n_bits == 5
        assert torch.equal(small.images, reduce_bits(resize_images(native.images, size), 5))
        assert torch.equal(small.labels, native.labels)


def test_download_verifies_and_fills_the_cache(mirrored, cache: Path, serve_mirror) -> None:
    source, checksums = mirrored
    serve_mirror(source)
    data = load_image_split("mnist", "test")
    assert data.images.shape == (load_image_split("mnist", "test", str(source)).images.shape[0], 1, 28, 28)
    assert _leftovers(cache / "mnist") == sorted(TEST_FILES)  # no temp files left behind
    for name in TEST_FILES:
        with gzip.open(cache / "mnist" / name) as f:
            assert hashlib.sha256(f.read()).hexdigest() == checksums[name]
    again = load_image_split("mnist", "test", download=False)  # served by the cache alone
    assert torch.equal(again.images, data.images)


def test_download_rejects_a_corrupted_file(mirrored, cache: Path, serve_mirror, tmp_path: Path) -> None:
    source, checksums = mirrored
    name = "t10k-labels-idx1-ubyte.gz"
    with gzip.open(source / name) as f:
        payload = bytearray(f.read())
    payload[100] = (payload[100] + 1) % 10  # one label changed: a valid file, a wrong hash
    serve_mirror(_mirror_with(tmp_path, source, name, gzip.compress(bytes(payload))))
    with pytest.raises(ValueError) as error:
        load_image_split("mnist", "test")
    message = str(error.value)
    assert "checksum" in message and name in message and checksums[name] in message
    assert hashlib.sha256(bytes(payload)).hexdigest() in message
    assert name not in _leftovers(cache / "mnist")
    assert not [n for n in _leftovers(cache / "mnist") if n.endswith(".part")]


def test_download_rejects_a_file_that_is_not_gzip(mirrored, cache: Path, serve_mirror,
                                                  tmp_path: Path) -> None:
    name = "t10k-images-idx3-ubyte.gz"
    serve_mirror(_mirror_with(tmp_path, mirrored[0], name, b"<html>not found</html>"))
    with pytest.raises(ValueError, match=f"checksum.*{name}"):
        load_image_split("mnist", "test")
    assert _leftovers(cache / "mnist") == []


def test_unreachable_file_and_disabled_download(cache: Path, serve_mirror, tmp_path: Path) -> None:
    serve_mirror(tmp_path)  # serves nothing useful: every request is a 404
    with pytest.raises(FileNotFoundError, match="could not download .*t10k-images"):
        load_image_split("mnist", "test")
    with pytest.raises(FileNotFoundError, match="download is disabled"):
        load_image_split("mnist", "test", download=False)
    assert _leftovers(cache / "mnist") == []


def test_missing_file_in_data_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz not found.*put the four"):
        load_image_split("mnist", "test", data_dir=str(tmp_path))


@pytest.mark.parametrize("damage", ["truncated payload", "truncated gzip", "wrong magic"])
def test_malformed_idx_in_data_dir(mnist_dir: Path, tmp_path: Path, damage: str) -> None:
    images, labels = TEST_FILES
    (tmp_path / images).symlink_to(mnist_dir / images)
    with gzip.open(mnist_dir / labels) as f:
        payload = f.read()
    if damage == "truncated payload":
        content = gzip.compress(payload[:-10])
    elif damage == "truncated gzip":
        content = gzip.compress(payload)[:-20]
    else:
        content = gzip.compress(b"\x00\x00\x08\x03" + payload[4:])
    (tmp_path / labels).write_bytes(content)
    with pytest.raises(ValueError, match=labels):
        load_image_split("mnist", "test", data_dir=str(tmp_path))


def test_images_and_labels_that_do_not_belong_together(mnist_dir: Path, tmp_path: Path) -> None:
    images, labels = TEST_FILES
    (tmp_path / images).symlink_to(mnist_dir / images)
    (tmp_path / labels).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes(3)))
    with pytest.raises(ValueError, match=r"\d+ images but .* 3 labels"):
        load_image_split("mnist", "test", data_dir=str(tmp_path))
