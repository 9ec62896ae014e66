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


def eight_gaussians_with_labels(n: int, g: torch.Generator | None = None, label: torch.Tensor | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal mixture of 8 isotropic Gaussians (std 0.5/sqrt 2) on a circle of radius 2 sqrt 2, and
    which component drew each point (0 at angle 0, counter-clockwise in steps of 45°); ``label``
    (a 0-dim integer tensor) draws every point from that component."""
    component = torch.randint(8, (n,), generator=g) if label is None else torch.full((n,), int(label))
    angle = component.float() * (math.pi / 4)
    centres = torch.stack([angle.cos(), angle.sin()], dim=1) * (2 * math.sqrt(2))
    return centres + _randn(n, g, 2) * (0.5 / math.sqrt(2)), component


def eight_gaussians(n: int, g: torch.Generator | None = None) -> torch.Tensor:
    """Equal mixture of 8 isotropic Gaussians (std 0.5/sqrt 2) on a circle of radius 2 sqrt 2."""
    return eight_gaussians_with_labels(n, g)[0]


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


def rotated_moons(n: int, g: torch.Generator | None = None, context: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``two_moons`` rotated about the origin by an angle ``θ ~ U[0, 2π)`` per point, with the context
    ``(cos θ, sin θ)``: a continuous family of densities ``p(x | θ)``. ``context`` (a 2-vector,
    normalised to unit length) fixes the angle of every point."""
    points = two_moons(n, g)
    if context is None:
        theta = _rand(n, g) * (2 * math.pi)
        cos, sin = theta.cos(), theta.sin()
    else:
        unit = context.float() / context.float().norm()
        cos, sin = unit[0].expand(n), unit[1].expand(n)
    x, y = points[:, 0], points[:, 1]
    return torch.stack([cos * x - sin * y, sin * x + cos * y], dim=1), torch.stack([cos, sin], dim=1)


#: ``(n, generator, context=None) -> (x, contexts)``: the context drawn with each point, or fixed
LabelledSampler = Callable[..., tuple[torch.Tensor, torch.Tensor]]

#: Toy densities with a context: name -> (sampler of ``(x, context)``, number of classes for
#: integer labels or ``None``, context width for vectors or ``None``).
CONDITIONAL_SAMPLERS: dict[str, tuple[LabelledSampler, int | None, int | None]] = {
    "8gaussians-class": (eight_gaussians_with_labels, 8, None),
    "2moons-rotated": (rotated_moons, None, 2),
}

SAMPLERS: dict[str, Sampler] = {
    "checkerboard": checkerboard,
    "8gaussians": eight_gaussians,
    "2moons": two_moons,
    "rings": rings,
    "pinwheel": pinwheel,
    "swissroll": swissroll,
}
TOY_DATASETS: tuple[str, ...] = tuple(SAMPLERS) + tuple(CONDITIONAL_SAMPLERS)


def sample_toy2d_with_context(name: str, n: int, generator: torch.Generator | None = None,
                              given: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` float32 samples ``(n, 2)`` of the toy density ``name`` (one of ``TOY_DATASETS``) and their
    contexts: int64 labels ``(n,)`` or float32 vectors ``(n, k)`` for the conditional toys
    (``CONDITIONAL_SAMPLERS``; ``given``, one label or vector, draws ``p(x | given)``), zeros ``(n,)``
    for the others."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {', '.join(TOY_DATASETS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of toy samples must be a positive integer, got {n!r}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"sample_toy2d needs a CPU generator, got one on {generator.device}")
    if name in CONDITIONAL_SAMPLERS:
        x, context = CONDITIONAL_SAMPLERS[name][0](n, generator, given)
        return x.float(), context if context.dtype == torch.long else context.float()
    return SAMPLERS[name](n, generator).float(), torch.zeros(n, dtype=torch.long)


def sample_toy2d(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` float32 samples ``(n, 2)`` of the toy density ``name`` (one of ``TOY_DATASETS``)."""
    return sample_toy2d_with_context(name, n, generator)[0]
