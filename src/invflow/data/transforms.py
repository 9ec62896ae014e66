"""Image transforms on batches ``(N, C, H, W)``: bit reduction, resizing, random flips and crops.

The random transforms draw from an optional ``torch.Generator`` (on the CPU unless the generator
lives elsewhere), so augmentation is reproducible from a seed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from invflow.config import check_n_bits

_RESIZE_CHUNK = 4096


def _check_batch(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} expects an image batch (N, C, H, W), got {got}")


def _check_uint8(images: torch.Tensor, name: str) -> None:
    _check_batch(images, name)
    if images.dtype != torch.uint8:
        raise ValueError(f"{name} expects uint8 images in [0, 255], got dtype {images.dtype}")


def reduce_bits(images: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Keep the ``n_bits`` most significant bits: ``x >> (8 - n_bits)``, values in ``[0, 2**n_bits)``.

    The 5-bit CelebA/LSUN data of Glow (Kingma & Dhariwal 2018) are made this way.
    """
    _check_uint8(images, "reduce_bits")
    check_n_bits(n_bits)
    return images if n_bits == 8 else images >> (8 - n_bits)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize square uint8 images to ``size x size``: antialiased bilinear, rounded to integers.

    Antialiasing (as in Pillow) matters when downsampling, e.g. CelebA-HQ 1024 -> 64.
    """
    _check_uint8(images, "resize_images")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"image size must be a positive integer, got {size!r}")
    height, width = images.shape[-2:]
    if height != width:
        raise ValueError(f"resize_images expects square images, got {height}x{width}; crop them first")
    if size == height:
        return images
    chunks = [
        F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False,
                      antialias=True).round_().clamp_(0, 255).to(torch.uint8)
        for chunk in images.split(_RESIZE_CHUNK)
    ]
    return torch.cat(chunks) if chunks else images.new_empty(images.shape[:2] + (size, size))


def _randint(high: int, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` integers in ``[0, high)`` drawn on ``generator``'s own device, moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.randint(high, (n,), generator=generator, device=source).to(device)


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally (along W) with probability 1/2, independently."""
    _check_batch(images, "random_flip")
    flip = _randint(2, images.shape[0], generator, images.device).bool()
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def _reflect(index: torch.Tensor, length: int) -> torch.Tensor:
    """Map indices in ``[-length + 1, 2 * length - 1)`` into ``[0, length)`` by reflection
    about the edge pixels (no edge repeat, like ``F.pad(mode="reflect")``)."""
    index = index.abs()
    return torch.where(index >= length, 2 * (length - 1) - index, index)


def random_crop_reflect(images: torch.Tensor, padding: int = 4,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Reflection-pad each image by ``padding`` and crop a random ``H x W`` window back, per image.

    Implemented by gathering reflected indices, so it works for every dtype (including uint8,
    which ``F.pad(mode="reflect")`` does not support) without materialising the padded batch.
    """
    _check_batch(images, "random_crop_reflect")
    n, channels, height, width = images.shape
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    if padding >= min(height, width):
        raise ValueError(f"padding must be smaller than the image size {height}x{width}, got {padding}")
    if padding == 0:
        return images
    offsets = _randint(2 * padding + 1, 2 * n, generator, images.device) - padding
    rows = _reflect(offsets[:n, None] + torch.arange(height, device=images.device), height)
    cols = _reflect(offsets[n:, None] + torch.arange(width, device=images.device), width)
    images = images.gather(2, rows[:, None, :, None].expand(n, channels, height, width))
    return images.gather(3, cols[:, None, None, :].expand(n, channels, height, width))
