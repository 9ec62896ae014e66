"""Every image Pillow opens becomes 8-bit RGB correctly, or is refused by name.

``Image.convert("RGB")`` alone is wrong for some modes: 16-bit and 32-bit integer images
(``I;16``, ``I``) are *clipped* at 255 instead of scaled, floating-point images (``F``) are
clipped too, and an alpha channel is dropped, revealing whatever colour hides under transparent
pixels. Here:

- ``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: Pillow's conversion to RGB;
- ``I;16*`` and ``I`` (16-bit PNG/TIFF): scaled from [0, 65535] to [0, 255] (``round(v / 257)``),
  refused if a value lies outside [0, 65535];
- an alpha channel (``RGBA``, ``LA``, ``PA``, ``P`` with transparency) is dropped only when every
  pixel is opaque, else the image is refused;
- anything else (``F``, multi-channel float, …) is refused;
- an EXIF orientation (cameras store pictures sideways and tag how to turn them) is applied, so
  the pixels are the picture a viewer shows (``read_as_shown``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

CONVERTIBLE = frozenset({"1", "L", "P", "RGB", "CMYK", "YCbCr", "LAB", "HSV"})
WITH_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
FORMATS = "8-bit grey/RGB/palette/CMYK, 1-bit, 16-bit grey, and opaque images with an alpha channel"


def read_as_shown(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation tag says (what a viewer shows); unchanged without one."""
    return ImageOps.exif_transpose(image)


def to_rgb8(image: Image.Image, path: Path) -> Image.Image:
    """``image`` as 8-bit RGB; ``ValueError`` naming ``path`` and its mode when it cannot be
    converted exactly."""
    mode = described = image.mode
    if mode == "P" and "transparency" in image.info:
        image, mode, described = image.convert("RGBA"), "RGBA", "P, a palette with transparency"
    if mode in WITH_ALPHA:
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            raise ValueError(f"image {path} has transparent pixels (mode {described}); flatten it onto a "
                             "background first, invflow does not guess one")
        return image.convert("RGB")
    if mode in SIXTEEN_BIT:
        values = np.asarray(image, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(f"image {path} (mode {mode}) has values in [{values.min()}, {values.max()}], "
                             "outside the 16-bit range [0, 65535]")
        grey = ((values + 128) // 257).astype(np.uint8)  # round(v / 257): 65535 -> 255, 0 -> 0
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in CONVERTIBLE:
        return image.convert("RGB")
    raise ValueError(f"image {path} has mode {mode}, which invflow does not convert; accepted: {FORMATS}")
