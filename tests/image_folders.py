"""Folders of random PNG images for tests that train or evaluate on ``data.dataset: folder``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def random_image_folder(root: Path, n: int, size: int = 8) -> Path:
    """``n`` random ``size``x``size`` RGB PNGs in ``root`` (created); the last tenth is the test split."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    return root
