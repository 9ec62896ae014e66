"""Image-folder loader on small generated PNG/JPEG trees."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invflow.data import load_image_split


def _save(path: Path, width: int, height: int, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (value, value, value)).save(path)


def make_tree(root: Path, count: int = 12, size: int = 20) -> list[str]:
    """``count`` images in nested folders with mixed formats; returns relative paths, sorted."""
    names = []
    for i in range(count):
        name = f"{'a' if i % 2 else 'b'}/{i:02d}.{('png', 'jpg', 'JPEG')[i % 3]}"
        _save(root / name, size, size, value=10 * i)
        names.append(name)
    (root / "notes.txt").write_text("not an image")
    return sorted(names)


def test_split_is_the_sorted_list_last_tenth_test(tmp_path: Path) -> None:
    names = make_tree(tmp_path, count=12)
    train = load_image_split("folder", "train", data_dir=str(tmp_path), image_size=8)
    test = load_image_split("folder", "test", data_dir=str(tmp_path), image_size=8)
    assert train.images.shape == (11, 3, 8, 8) and test.images.shape == (1, 3, 8, 8)
    assert train.images.dtype == torch.uint8 and train.num_classes == 1
    assert (train.labels == 0).all() and train.labels.dtype == torch.int64
    last = int(Path(names[-1]).stem) * 10  # the test image is the last in sorted order
    assert (test.images.int() - last).abs().max() <= 2  # JPEG may shift a flat grey slightly


def test_random_held_out_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    """Lu & Huang 2020, app. D: a random held-out test set of N images (here 4 of 12), fixed by
    the seed, disjoint from train, not the last files; another seed holds out other files."""
    from invflow.data.folder import list_images, split_files, test_file_names

    make_tree(tmp_path, count=12)
    files = list_images(tmp_path)
    test = split_files(files, "test", test_images=4, split_seed=7)
    train = split_files(files, "train", test_images=4, split_seed=7)
    assert len(test) == 4 and len(train) == 8 and not set(test) & set(train)
    assert set(test) | set(train) == set(files)
    assert test == split_files(files, "test", test_images=4, split_seed=7)
    assert any(split_files(files, "test", test_images=4, split_seed=s) != test for s in range(8, 12))
    assert test_file_names(str(tmp_path), 4, 7) == [p.relative_to(tmp_path).as_posix() for p in test]
    images = load_image_split("folder", "test", data_dir=str(tmp_path), image_size=8, folder_test_images=4,
                              folder_split_seed=7)
    assert images.images.shape == (4, 3, 8, 8)
    with pytest.raises(ValueError, match="folder_test_images=12 needs more images"):
        split_files(files, "test", test_images=12)


def test_native_size_reduce_bits_and_grayscale(tmp_path: Path) -> None:
    make_tree(tmp_path, count=10, size=12)
    Image.new("L", (12, 12), 255).save(tmp_path / "z-gray.png")  # sorts last: the test image
    test = load_image_split("folder", "test", data_dir=str(tmp_path), n_bits=5)
    assert test.images.shape == (1, 3, 12, 12) and (test.images == 31).all()


def test_center_crop_of_a_wide_image(tmp_path: Path) -> None:
    """A 30x10 image: left and right thirds black, middle white -> the crop is all white."""
    pixels = np.zeros((10, 30, 3), dtype=np.uint8)
    pixels[:, 10:20] = 255
    for i in range(10):
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    data = load_image_split("folder", "train", data_dir=str(tmp_path), image_size=5)
    assert data.images.shape == (9, 3, 5, 5) and (data.images == 255).all()


def test_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    make_tree(tmp_path, count=10, size=16)
    _save(tmp_path / "a" / "99-big.png", 40, 32)
    with pytest.raises(ValueError, match="99-big.png is 32px.*set image_size"):
        load_image_split("folder", "train", data_dir=str(tmp_path))
    assert load_image_split("folder", "train", data_dir=str(tmp_path), image_size=16).images.shape[0] == 10


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    make_tree(tmp_path, count=10)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        load_image_split("folder", "train", data_dir=str(tmp_path), image_size=8)


def test_truncated_jpeg_is_named(tmp_path: Path) -> None:
    make_tree(tmp_path, count=10)
    path = tmp_path / "a" / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(ValueError, match="cannot read image .*cut.jpg"):
        load_image_split("folder", "train", data_dir=str(tmp_path), image_size=8)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs data_dir"):
        load_image_split("folder", "train")
    with pytest.raises(FileNotFoundError, match="image folder .*nowhere not found"):
        load_image_split("folder", "train", data_dir=str(tmp_path / "nowhere"))
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no PNG/JPEG images found"):
        load_image_split("folder", "train", data_dir=str(tmp_path))
    make_tree(tmp_path / "few", count=4)
    assert len(load_image_split("folder", "train", data_dir=str(tmp_path / "few"))) == 4
    with pytest.raises(ValueError, match="4 images, too few for a test split"):
        load_image_split("folder", "test", data_dir=str(tmp_path / "few"))
