"""Toy 2D densities: shapes, determinism from the generator alone, checkerboard support/entropy."""
from __future__ import annotations

import math

import pytest
import torch

from invflow.data import TOY_DATASETS, sample_toy2d
from invflow.data.toy2d import sample_toy2d_with_context


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_names() -> None:
    assert TOY_DATASETS == ("checkerboard", "8gaussians", "2moons", "rings", "pinwheel", "swissroll",
                            "8gaussians-class", "2moons-rotated")


def test_labelled_eight_gaussians_are_the_same_points_with_their_component() -> None:
    x, labels = sample_toy2d_with_context("8gaussians-class", 4000, torch.Generator().manual_seed(3))
    torch.testing.assert_close(x, sample_toy2d("8gaussians", 4000, torch.Generator().manual_seed(3)))
    angle = torch.atan2(x[:, 1], x[:, 0]).remainder(2 * math.pi)
    nearest = torch.round(angle / (math.pi / 4)).long() % 8
    assert labels.dtype == torch.long and float((nearest == labels).float().mean()) > 0.99
    given, given_labels = sample_toy2d_with_context("8gaussians-class", 500, torch.Generator(),
                                                    given=torch.tensor(5))
    assert bool((given_labels == 5).all())
    centre = 2 * math.sqrt(2) * torch.tensor([math.cos(5 * math.pi / 4), math.sin(5 * math.pi / 4)])
    assert float((given.mean(dim=0) - centre).norm()) < 0.1


def test_rotated_moons_are_two_moons_turned_by_their_context() -> None:
    x, context = sample_toy2d_with_context("2moons-rotated", 3000, torch.Generator().manual_seed(4))
    torch.testing.assert_close(context.norm(dim=1), torch.ones(3000))
    cos, sin = context[:, 0], context[:, 1]
    back = torch.stack([cos * x[:, 0] + sin * x[:, 1], -sin * x[:, 0] + cos * x[:, 1]], dim=1)
    reference = sample_toy2d("2moons", 3000, torch.Generator().manual_seed(5))
    torch.testing.assert_close(back.mean(dim=0), reference.mean(dim=0), atol=0.1, rtol=0)
    _, fixed = sample_toy2d_with_context("2moons-rotated", 10, torch.Generator(),
                                         given=torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(fixed, torch.tensor([[0.0, 1.0]]).expand(10, 2))


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_shape_scale_and_determinism(name: str) -> None:
    torch.manual_seed(1)
    first = sample_toy2d(name, 5000, _seeded(0))
    torch.manual_seed(2)  # the global RNG must play no part
    second = sample_toy2d(name, 5000, _seeded(0))
    assert first.shape == (5000, 2) and first.dtype == torch.float32
    assert torch.equal(first, second)
    assert not torch.equal(first, sample_toy2d(name, 5000, _seeded(1)))
    assert torch.isfinite(first).all()
    # "Roughly in [-4, 4]^2": nearly all mass inside, centred, and spread over both axes.
    assert (first.abs() <= 4.5).all(dim=1).float().mean() > 0.99
    assert first.mean(0).abs().max() < 1.0 and (first.std(0) > 0.8).all()


def test_checkerboard_support_and_entropy() -> None:
    """Uniform on the 8 black 2x2 cells of [-4, 4]^2: density 1/32, entropy log2(32) = 5 bits."""
    n = 200_000
    x = sample_toy2d("checkerboard", n, _seeded(0)).double()
    assert (x.abs() <= 4).all()
    cell = ((x + 4) // 2).long().clamp(max=3)
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all(), "a sample fell on a white cell"
    counts = torch.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16).double()
    black = counts[counts > 0]
    assert black.numel() == 8
    # Each black cell holds 1/8 of the mass; tolerance 5 binomial standard deviations.
    assert (black - n / 8).abs().max() < 5 * math.sqrt(n * (1 / 8) * (7 / 8))
    # Plug-in differential entropy on 0.5 x 0.5 bins (8 occupied per black cell -> 128 bins);
    # its bias (bins - 1) / (2 n ln 2) is about 5e-4 bits, its noise smaller still.
    fine = ((x + 4) / 0.5).long().clamp(max=15)
    p = torch.bincount(fine[:, 0] * 16 + fine[:, 1], minlength=256).double() / n
    p = p[p > 0]
    entropy_bits = -(p * p.log2()).sum() + math.log2(0.25)
    assert p.numel() == 128
    assert abs(entropy_bits.item() - 5.0) < 0.01


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown toy data set 'spiral'.*checkerboard"):
        sample_toy2d("spiral", 10)
    for n in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            sample_toy2d("rings", n)  # type: ignore[arg-type]
