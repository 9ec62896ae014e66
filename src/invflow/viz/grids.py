"""Image grids encoded as PNG with Pillow (the caller writes the bytes, e.g. through ``invflow.storage``)."""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor


def image_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images with values in [0, 1] into one ``uint8`` array (H', W', C)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"image_grid: expected (N, 1 or 3, H, W) images, got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = torch.ones(c, ncol * (h + padding) + padding, nrow * (w + padding) + padding)
    pixels = images.detach().float().cpu().nan_to_num(0.5).clamp(0, 1)
    for i in range(n):
        r, q = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top : top + h, left : left + w] = pixels[i]
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return array[..., 0] if c == 1 else array


LABEL_WIDTH = 64  # pixels left of a labelled grid's rows


def label_rows(grid: np.ndarray, labels: list[str], tile_height: int, padding: int = 2) -> Image.Image:
    """The grid with a white margin on the left holding one label per row of tiles."""
    image = Image.fromarray(grid).convert("RGB")
    out = Image.new("RGB", (image.width + LABEL_WIDTH, image.height), "white")
    out.paste(image, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(out)
    for r, label in enumerate(labels):
        top = padding + r * (tile_height + padding)
        draw.text((4, top + max(0, tile_height // 2 - 6)), label, fill="black")
    return out


def image_grid_png(images: Tensor, nrow: int | None = None, row_labels: list[str] | None = None) -> bytes:
    """``images`` (values in [0, 1]) as the bytes of a PNG grid, ``nrow`` images per row; with
    ``row_labels``, each row labelled on the left (e.g. its class)."""
    png = io.BytesIO()
    grid = image_grid(images, nrow)
    picture = label_rows(grid, row_labels, images.shape[2]) if row_labels else Image.fromarray(grid)
    picture.save(png, format="PNG")
    return png.getvalue()
