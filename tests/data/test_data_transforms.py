"""Transforms: bit reduction, antialiased resize (vs Pillow), random flips and reflect crops."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from invflow.data.transforms import random_crop_reflect, random_flip, reduce_bits, resize_images


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_reduce_bits_keeps_the_high_bits() -> None:
    x = torch.tensor([0, 7, 8, 127, 128, 255], dtype=torch.uint8).view(1, 1, 1, 6)
    assert reduce_bits(x, 5).flatten().tolist() == [0, 0, 1, 15, 16, 31]
    assert reduce_bits(x, 1).flatten().tolist() == [0, 0, 0, 0, 1, 1]
    assert torch.equal(reduce_bits(x, 8), x) and reduce_bits(x, 3).dtype == torch.uint8


@pytest.mark.parametrize("n_bits", [0, 9, 4.0])
def test_reduce_bits_rejects_bad_bits(n_bits: object) -> None:
    with pytest.raises(ValueError, match="n_bits"):
        reduce_bits(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), n_bits)  # type: ignore[arg-type]


def test_transforms_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        reduce_bits(torch.zeros(1, 1, 2, 2), 5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        resize_images(torch.zeros(2, 2, dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match="square"):
        resize_images(torch.zeros(1, 1, 4, 6, dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match="positive"):
        resize_images(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 0)
    with pytest.raises(ValueError, match="padding must be smaller"):
        random_crop_reflect(torch.zeros(1, 1, 4, 4), padding=4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_flip(torch.zeros(3, 4, 4))


def test_resize_matches_pillow_bilinear() -> None:
    """torch's antialiased bilinear follows Pillow's filter; rounding may differ by one level."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(64, 64), dtype=np.uint8)
    for size in (16, 27, 100):
        ours = resize_images(torch.from_numpy(pixels)[None, None], size)[0, 0].int()
        pillow = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))
        assert ours.shape == (size, size)
        assert (ours - torch.from_numpy(pillow.astype(np.int32))).abs().max() <= 1


def test_resize_shapes_constants_and_identity() -> None:
    x = torch.full((3, 2, 28, 28), 200, dtype=torch.uint8)
    small = resize_images(x, 16)
    assert small.shape == (3, 2, 16, 16) and small.dtype == torch.uint8 and (small == 200).all()
    assert resize_images(x, 28) is x
    assert resize_images(x[:0], 8).shape == (0, 2, 8, 8)


def test_random_flip_flips_about_half_and_is_seeded() -> None:
    x = torch.arange(500 * 4, dtype=torch.uint8).view(500, 1, 1, 4).repeat(1, 2, 3, 1)
    out = random_flip(x, _seeded(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped ^ kept).all(), "every image is either unchanged or mirrored whole"
    assert 200 < int(flipped.sum()) < 300
    assert torch.equal(out, random_flip(x, _seeded(0)))
    assert out.dtype == x.dtype


def test_random_crop_reflect_is_a_window_of_the_reflect_padded_image() -> None:
    n, pad = 400, 2
    x = torch.arange(n * 2 * 5 * 6, dtype=torch.float64).view(n, 2, 5, 6)
    out = random_crop_reflect(x, padding=pad, generator=_seeded(0))
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    seen = set()
    for i in range(n):
        windows = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + 5, dx:dx + 6])]
        assert len(windows) == 1
        seen.add(windows[0])
    assert len(seen) == (2 * pad + 1) ** 2, "every offset should occur"
    assert torch.equal(out, random_crop_reflect(x, padding=pad, generator=_seeded(0)))


def test_random_crop_reflect_on_uint8_and_zero_padding() -> None:
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).repeat(8, 3, 1, 1)
    out = random_crop_reflect(x, padding=1, generator=_seeded(3))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(random_crop_reflect(x, padding=0), x)
