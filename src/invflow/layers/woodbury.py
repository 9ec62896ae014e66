"""Woodbury transformations (Lu & Huang 2020, "Woodbury Transformations for Deep Generative Flows").

Each layer is a low-rank update ``I_n + U V`` of one axis of a ``(B, C, H, W)`` image, applied
and inverted in time linear in ``C·H·W`` for a fixed latent dimension ``d`` (maths in
``woodbury_math``). Sec. 3 of the paper defines

- channel Woodbury ``x_c = (I_c + U_c V_c) x`` on ``x`` viewed as ``(c, hw)``,
- spatial Woodbury ``y = x_c (I_hw + U_s V_s)``,
  with ``log|det| = hw·log|det(I_dc + V_c U_c)| + c·log|det(I_ds + V_s U_s)|``;

appendix B (eqs. 3–5) the memory-efficient variant (ME-Woodbury) that replaces the ``hw x ds``
spatial factors with a width transform on ``(ch, w)`` and a height transform on ``(cw, h)``,
``log|det| = hw·ld_c + ch·ld_w + cw·ld_h``.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from invflow.core.flow import Flow, SequentialFlow, check_shape, zero_logdet
from invflow.layers.choices import MixingChoice
from invflow.layers.woodbury_math import (
    init_low_rank,
    sylvester_logdet,
    woodbury_left,
    woodbury_left_inverse,
    woodbury_right,
    woodbury_right_inverse,
)


def _check_positive(**sizes: int) -> None:
    for name, size in sizes.items():
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be a positive integer, got {size!r}")


class _AxisWoodbury(Flow):
    """A low-rank update ``I_n + U V`` of one axis of ``(B, C, H, W)`` images of a fixed size.

    Subclasses set ``n`` (the axis length), ``repeats`` (how many length-``n`` fibres an image
    has, the multiplicity of ``log|det(I_d + V U)|`` in the log-det) and ``_mix``.
    """

    def __init__(self, channels: int, height: int, width: int, latent_dim: int, n: int) -> None:
        super().__init__()
        _check_positive(channels=channels, height=height, width=width, latent_dim=latent_dim)
        self.shape = (channels, height, width)
        self.repeats = channels * height * width // n
        u, v = init_low_rank(n, latent_dim)
        self.U = nn.Parameter(u)
        self.V = nn.Parameter(v)

    def _mix(self, x: Tensor, inverse: bool) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(x, self.shape, type(self).__name__)
        return self._mix(x, inverse=False), zero_logdet(x) + self.repeats * sylvester_logdet(self.U, self.V)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(z, self.shape, f"{type(self).__name__}.inverse")
        return self._mix(z, inverse=True), zero_logdet(z) - self.repeats * sylvester_logdet(self.U, self.V)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, latent_dim={self.U.shape[1]}"


class ChannelWoodbury(_AxisWoodbury):
    """``x ↦ (I_c + U V) x`` with ``x`` viewed as ``(c, hw)``; log-det ``hw·log|det(I_d + V U)|``."""

    def __init__(self, channels: int, height: int, width: int, latent_dim: int) -> None:
        super().__init__(channels, height, width, latent_dim, n=channels)

    def _mix(self, x: Tensor, inverse: bool) -> Tensor:
        fn = woodbury_left_inverse if inverse else woodbury_left
        return fn(x.flatten(2), self.U, self.V).view_as(x)


class SpatialWoodbury(_AxisWoodbury):
    """``x ↦ x (I_hw + U V)`` with ``x`` viewed as ``(c, hw)``; log-det ``c·log|det(I_d + V U)|``."""

    def __init__(self, channels: int, height: int, width: int, latent_dim: int) -> None:
        super().__init__(channels, height, width, latent_dim, n=height * width)

    def _mix(self, x: Tensor, inverse: bool) -> Tensor:
        fn = woodbury_right_inverse if inverse else woodbury_right
        return fn(x.flatten(2), self.U, self.V).view_as(x)


class WidthWoodbury(_AxisWoodbury):
    """``x ↦ x (I_w + U V)`` with ``x`` viewed as ``(ch, w)`` (appendix B, eq. 4); log-det ``ch·ld_w``."""

    def __init__(self, channels: int, height: int, width: int, latent_dim: int) -> None:
        super().__init__(channels, height, width, latent_dim, n=width)

    def _mix(self, x: Tensor, inverse: bool) -> Tensor:
        fn = woodbury_right_inverse if inverse else woodbury_right
        return fn(x, self.U, self.V)


class HeightWoodbury(_AxisWoodbury):
    """``x ↦ x (I_h + U V)`` with ``x`` viewed as ``(cw, h)`` (appendix B, eq. 5); log-det ``cw·ld_h``."""

    def __init__(self, channels: int, height: int, width: int, latent_dim: int) -> None:
        super().__init__(channels, height, width, latent_dim, n=height)

    def _mix(self, x: Tensor, inverse: bool) -> Tensor:
        fn = woodbury_right_inverse if inverse else woodbury_right
        # (B, c, h, w) -> (B, c, w, h): the rows of the (cw, h) view, without a copy.
        return fn(x.transpose(-1, -2), self.U, self.V).transpose(-1, -2)


class WoodburyMixing(SequentialFlow):
    """The Woodbury-Glow mixing step: channel then spatial Woodbury (Lu & Huang 2020, sec. 3).

    ``log|det| = hw·log|det(I_dc + V_c U_c)| + c·log|det(I_ds + V_s U_s)|``.
    """

    def __init__(
        self, channels: int, height: int, width: int, latent_channel: int, latent_spatial: int
    ) -> None:
        super().__init__(
            ChannelWoodbury(channels, height, width, latent_channel),
            SpatialWoodbury(channels, height, width, latent_spatial),
        )


class MEWoodbury(SequentialFlow):
    """Memory-efficient Woodbury: channel, width then height transforms (appendix B, eqs. 3–5).

    Parameters ``O((c·dc + w·dw + h·dh))`` instead of ``O(c·dc + hw·ds)``;
    ``log|det| = hw·ld_c + ch·ld_w + cw·ld_h``.
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        latent_channel: int,
        latent_height: int,
        latent_width: int,
    ) -> None:
        super().__init__(
            ChannelWoodbury(channels, height, width, latent_channel),
            WidthWoodbury(channels, height, width, latent_width),
            HeightWoodbury(channels, height, width, latent_height),
        )


LATENT_DEFAULT = 16  # a latent dimension not given per level: min(axis size, 16)


def _per_level(dims: list[int] | None, level: int, size: int) -> int:
    """``dims[level]``, or ``min(size, LATENT_DEFAULT)`` for an axis of ``size`` without a list."""
    return min(size, LATENT_DEFAULT) if dims is None else dims[level]


@dataclass
class WoodburyChoice(MixingChoice):
    """``mixing: {name: woodbury, latent_channel: [d_c per level], latent_spatial: [d_s per level]}``
    (Lu & Huang 2020, Table 3); an axis without a list gets ``min(size, 16)``."""

    name = "woodbury"
    latent_channel: list[int] | None = None
    latent_spatial: list[int] | None = None

    def build(self, shape: tuple[int, ...], level: int) -> Flow:
        c, h, w = shape
        return WoodburyMixing(c, h, w, latent_channel=_per_level(self.latent_channel, level, c),
                              latent_spatial=_per_level(self.latent_spatial, level, h * w))


@dataclass
class MEWoodburyChoice(MixingChoice):
    """``mixing: {name: me-woodbury, latent_channel: […], latent_height: […], latent_width: […]}``
    (Lu & Huang 2020, app. B and Table 3); an axis without a list gets ``min(size, 16)``."""

    name = "me-woodbury"
    latent_channel: list[int] | None = None
    latent_height: list[int] | None = None
    latent_width: list[int] | None = None

    def build(self, shape: tuple[int, ...], level: int) -> Flow:
        c, h, w = shape
        return MEWoodbury(c, h, w, latent_channel=_per_level(self.latent_channel, level, c),
                          latent_height=_per_level(self.latent_height, level, h),
                          latent_width=_per_level(self.latent_width, level, w))
