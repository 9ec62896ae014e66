"""Two-dimensional toy densities (as in the FFJORD / residual-flow papers), generated in torch.

Every sample is drawn from the given ``torch.Generator`` only, so a seeded generator reproduces
the data exactly. All sets live roughly in ``[-4, 4]^2``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

Sampler = Callable[[int, torch.Generator | None], torch.Tensor]


def _randn(n: int, g: torch.Generator | None, *shape: int) -> torch.Tensor:
    return torch.randn(n, *shape, generator=g)


def _rand(n: int, g: torch.Generator | None, *shape: int) -> torch.Tensor:
    return torch.rand(n, *shape, generator=g)


def checkerboard(n: int, g: torch.Generator | None = None) -> torch.Tensor:
    """Uniform on the 8 "black" cells of a 4x4 board of 2x2 cells on ``[-4, 4]^2``.

    Cell ``(i, j)`` (column, row from the lower left) is black when ``i + j`` is even. The
    density is ``1/32`` on an area of 32, so the differential entropy is exactly
    ``log2(32) = 5`` bits.
    """
    column = torch.randint(4, (n,), generator=g)
    row = 2 * torch.randint(2, (n,), generator=g) + column % 2
    cell = torch.stack([column, row], dim=1).float()
    return (cell + _rand(n, g, 2)) * 2 - 4


def eight_gaussians(n: int, g: torch.Generator | None = None) -> torch.Tensor:
    """Equal mixture of 8 isotropic Gaussians (std 0.5/sqrt 2) on a circle of radius 2 sqrt 2."""
    angle = torch.randint(8, (n,), generator=g).float() * (math.pi / 4)
    centres = torch.stack([angle.cos(), angle.sin()], dim=1) * (2 * math.sqrt(2))
    return centres + _randn(n, g, 2) * (0.5 / math.sqrt(2))


def two_moons(n: int, g: torch.Generator | None = None) -> torch.Tensor:
    """Two interleaved half circles with Gaussian noise 0.1, scaled by 2 and centred."""
    t = _rand(n, g) * math.pi
    lower = torch.randint(2, (n,), generator=g).bool()
    upper_arc = torch.stack([t.cos(), t.sin()], dim=1)
    lower_arc = torch.stack([1 - t.cos(), 0.5 - t.sin()], dim=1)
    points = torch.where(lower[:, None], lower_arc, upper_arc) + 0.1 * _randn(n, g, 2)
    return points * 2 - torch.tensor([1.0, 0.5])


def rings(n: int, g: torch.Generator | None = None) -> torch.Tensor:
    """Four concentric rings of radii 0.75, 1.5, 2.25, 3 (equal mass), radial noise 0.08."""
    radius = (torch.randint(4, (n,), generator=g).float() + 1) * 0.75
    angle = _rand(n, g) * (2 * math.pi)
    radius = radius + 0.08 * _randn(n, g)
    return torch.stack([angle.cos(), angle.sin()], dim=1) * radius[:, None]


def pinwheel(n: int, g: torch.Generator | None = None) -> torch.Tensor:
    """Five spiralling arms: a stretched Gaussian per arm, rotated by an angle growing along it."""
    arms, radial_std, tangential_std, twist = 5, 0.3, 0.1, 0.25
    arm = torch.randint(arms, (n,), generator=g).float()
    local = _randn(n, g, 2) * torch.tensor([radial_std, tangential_std]) + torch.tensor([1.0, 0.0])
    angle = arm * (2 * math.pi / arms) + twist * local[:, 0].exp()
    cos, sin = angle.cos(), angle.sin()
    rotated = torch.stack([cos * local[:, 0] - sin * local[:, 1],
                           sin * local[:, 0] + cos * local[:, 1]], dim=1)
    return rotated * 2


def swissroll(n: int, g: torch.Generator | None = None) -> torch.Tensor:
    """A 2D Swiss roll: ``t (cos t, sin t)`` for ``t`` in ``[1.5 pi, 4.5 pi]``, noise 1, scaled 1/5."""
    t = 1.5 * math.pi * (1 + 2 * _rand(n, g))
    points = torch.stack([t * t.cos(), t * t.sin()], dim=1) + _randn(n, g, 2)
    return points / 5


SAMPLERS: dict[str, Sampler] = {
    "checkerboard": checkerboard,
    "8gaussians": eight_gaussians,
    "2moons": two_moons,
    "rings": rings,
    "pinwheel": pinwheel,
    "swissroll": swissroll,
}
TOY_DATASETS: tuple[str, ...] = tuple(SAMPLERS)


def sample_toy2d(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` float32 samples ``(n, 2)`` of the toy density ``name`` (one of ``TOY_DATASETS``)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {', '.join(TOY_DATASETS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of toy samples must be a positive integer, got {n!r}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"sample_toy2d needs a CPU generator, got one on {generator.device}")
    return SAMPLERS[name](n, generator).float()
