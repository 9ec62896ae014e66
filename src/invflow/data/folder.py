"""A folder of PNG/JPEG images (CelebA-HQ, LSUN exported as images), searched recursively.

Each image is converted to 8-bit RGB (``image_modes.to_rgb8``: 16-bit images scaled, opaque alpha
dropped, anything else refused by name), center-cropped to a square and resized with Pillow's bilinear
filter (antialiased when downsampling). The split is deterministic: by default the files sorted
by relative path, the last tenth is ``test``, the rest ``train``; with ``test_images = N`` a
random N of them (a permutation seeded by ``split_seed``) is ``test``, as Lu & Huang 2020
(app. D) do for CelebA-HQ (3,000 images). Without ``labels`` every image has label 0 (one
class); with ``labels`` the folder must hold one sub-folder per class (``root/<class>/…``, the
sorted names are classes 0, 1, …) and each image gets its sub-folder's class.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from invflow.data.held_out import HeldOutSet, held_out_paths, training_paths
from invflow.data.image_modes import read_as_shown, to_rgb8

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
TEST_FRACTION_DENOMINATOR = 10  # the last 1/10 of the sorted files is the test split


def list_images(root: Path) -> list[Path]:
    """PNG/JPEG files under ``root`` (recursively), sorted by their path relative to ``root``."""
    files = (p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def split_files(
    files: list[Path], split: str, test_images: int | None = None, split_seed: int = 0
) -> list[Path]:
    """The ``split`` part of the sorted file list: the last tenth is ``test``, the rest ``train``;
    or, with ``test_images``, that many files drawn at random (seeded) are ``test``. Both parts
    keep the sorted order."""
    if test_images is None:
        n_test = len(files) // TEST_FRACTION_DENOMINATOR
        return files[len(files) - n_test:] if split == "test" else files[:len(files) - n_test]
    if test_images >= len(files):
        raise ValueError(
            f"data.folder_test_images={test_images} needs more images than the {len(files)} found; "
            "lower it or add images"
        )
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(split_seed))
    is_test = torch.zeros(len(files), dtype=torch.bool)
    is_test[perm[:test_images]] = True
    return [f for f, t in zip(files, is_test.tolist()) if t == (split == "test")]


def test_file_names(data_dir: str, test_images: int | None = None, split_seed: int = 0) -> list[str]:
    """The held-out files' paths relative to ``data_dir`` (what a run directory records)."""
    root = Path(data_dir).expanduser()
    return [
        p.relative_to(root).as_posix()
        for p in split_files(list_images(root), "test", test_images, split_seed)
    ]


def class_folders(root: Path) -> list[str]:
    """The sorted names of ``root``'s class sub-folders (those holding images); a ``ValueError``
    naming the problem when the folder is not laid out as ``root/<class>/…`` with two classes or
    more."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} not found; set data_dir to a folder of class "
                                "sub-folders")
    files = list_images(root)
    loose = [p for p in files if p.parent == root]
    if loose:
        raise ValueError(f"data.folder_labels needs one sub-folder per class, but {root} holds {len(loose)} "
                         f"image(s) outside any sub-folder (e.g. {loose[0].name})")
    classes = sorted({p.relative_to(root).parts[0] for p in files})
    if len(classes) < 2:
        raise ValueError(f"data.folder_labels needs at least two class sub-folders in {root}, found "
                         f"{len(classes)}: {classes}")
    return classes


def read_square_image(path: Path, size: int | None) -> np.ndarray:
    """``path`` as RGB, center-cropped to a square, resized to ``size`` if given: uint8 (3, s, s)."""
    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"cannot read image {path} ({err}); remove or replace it") from err
    image = to_rgb8(read_as_shown(image), path)
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if size is not None and side != size:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1)


def load_folder(
    split: str,
    data_dir: str | None,
    image_size: int | None = None,
    test_images: int | None = None,
    split_seed: int = 0,
    labels: bool = False,
    held_out: HeldOutSet | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Images of ``split`` as uint8 ``(N, 3, s, s)``, their labels and the number of classes: with
    ``labels`` the class sub-folder of each image (:func:`class_folders`), else zeros and one class.

    ``image_size`` None keeps the images' own (square-cropped) size, which must then be the same
    for every image. ``test_images``/``split_seed``: see :func:`split_files`; a run's recorded
    ``held_out`` set replaces them (its files are the test split, checked by content, and the
    others the training split; ``invflow.data.held_out``).
    """
    if data_dir is None:
        raise ValueError("dataset 'folder' needs data_dir: a folder of PNG/JPEG images")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {root} not found; set data_dir to a folder of PNG/JPEG images"
        )
    files = list_images(root)
    if not files:
        raise ValueError(f"no PNG/JPEG images found under {root}; set data_dir to an image folder")
    classes = class_folders(root) if labels else []  # refused before any image is read
    if held_out is not None:
        chosen = held_out_paths(held_out, root) if split == "test" else training_paths(held_out, root, files)
    else:
        chosen = split_files(files, split, test_images, split_seed)
    if not chosen:
        raise ValueError(
            f"{root} has {len(files)} images, too few for a test split (the last "
            f"1/{TEST_FRACTION_DENOMINATOR} of the sorted files); add at least "
            f"{TEST_FRACTION_DENOMINATOR} images"
        )
    images: np.ndarray | None = None
    for i, path in enumerate(tqdm(chosen, desc=f"reading {root.name}", unit="img",
                                  disable=not sys.stderr.isatty())):
        pixels = read_square_image(path, image_size)
        if images is None:
            images = np.empty((len(chosen),) + pixels.shape, dtype=np.uint8)
        elif pixels.shape != images.shape[1:]:
            raise ValueError(
                f"{path} is {pixels.shape[-1]}px square after cropping, the first image "
                f"{images.shape[-1]}px; set image_size so that all images are resized"
            )
        images[i] = pixels
    if not labels:
        return torch.from_numpy(images), torch.zeros(len(chosen), dtype=torch.int64), 1
    index = {name: k for k, name in enumerate(classes)}
    targets = [index[p.relative_to(root).parts[0]] for p in chosen]
    return torch.from_numpy(images), torch.tensor(targets, dtype=torch.int64), len(classes)
