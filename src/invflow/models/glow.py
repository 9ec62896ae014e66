"""Glow-family models (Kingma & Dhariwal 2018; Lu & Huang 2020, docs/architecture.md section 5).

Multi-scale: L levels, each ``Squeeze → K × (ActNorm → mixing → coupling)``, then a factor-out
of half the channels with a learned conditional Gaussian prior (all but the last level). The
mixing layer and the coupling are chosen by ``model.mixing`` and ``model.coupling``. On 2D toy
data the same step (ActNorm → linear LU mixing → coupling) is stacked without squeezes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from invflow.config import DataConfig, positive
from invflow.core.context import ContextSpec
from invflow.core.distributions import StandardNormal
from invflow.core.flow import Flatten, Flow, SequentialFlow, mark_place
from invflow.core.model import FlowModel
from invflow.data.registry import input_shape
from invflow.layers.actnorm import ActNorm
from invflow.layers.conditional_prior import ConditionalGaussianPrior
from invflow.layers.coupling import AdditiveCoupling, AffineCoupling
from invflow.layers.invconv import InvConv1x1
from invflow.layers.logit import LogitTransform
from invflow.layers.split import FactorOut
from invflow.layers.squeeze import Squeeze
from invflow.models.conditioning import model_context

Mixing = Literal["1x1", "lu", "emerging", "periodic", "woodbury", "me-woodbury"]
Coupling = Literal["affine", "additive", "spline", "macow"]


@dataclass
class GlowConfig:
    """``model`` section of a Glow-family preset; Woodbury latent dims are given per level."""

    SECTION = "model"
    levels: int = 3
    steps_per_level: int = 32
    hidden_channels: int = 512
    mixing: Mixing = "lu"
    coupling: Coupling = "affine"
    split_prior: bool = True
    logit_alpha: float | None = None
    woodbury_latent_channel: list[int] | None = None
    woodbury_latent_spatial: list[int] | None = None
    woodbury_latent_height: list[int] | None = None
    woodbury_latent_width: list[int] | None = None
    emerging_kernel_size: int = 3
    periodic_kernel_size: int = 3
    spline_bins: int = 4
    spline_tail_bound: float = 3.0
    conditional: bool = False  # p(x | y): the data set's labels (or toy contexts), see build()

    def validate(self) -> None:
        positive(self, "levels", "steps_per_level", "hidden_channels", "emerging_kernel_size",
                 "periodic_kernel_size", "spline_bins", "spline_tail_bound")
        if self.logit_alpha is not None and not 0 <= self.logit_alpha < 0.5:
            raise ValueError(f"model.logit_alpha must be in [0, 0.5), got {self.logit_alpha}")
        for key in ("woodbury_latent_channel", "woodbury_latent_spatial",
                    "woodbury_latent_height", "woodbury_latent_width"):
            dims = getattr(self, key)
            if dims is not None and (len(dims) != self.levels or min(dims) < 1):
                raise ValueError(
                    f"model.{key} needs {self.levels} positive entries (one per level), got {dims}"
                )

    def latent(self, key: str, level: int, default: int) -> int:
        dims = getattr(self, f"woodbury_latent_{key}")
        return default if dims is None else dims[level]


def make_mixing(cfg: GlowConfig, shape: tuple[int, int, int], level: int) -> Flow:
    """The invertible channel/spatial mixing layer named by ``cfg.mixing`` for ``(C, H, W)``."""
    c, h, w = shape
    if cfg.mixing in ("1x1", "lu"):
        return InvConv1x1(c, lu=cfg.mixing == "lu")
    if cfg.mixing == "emerging":
        from invflow.layers.emerging import EmergingConv

        return EmergingConv(c, kernel_size=cfg.emerging_kernel_size)
    if cfg.mixing == "periodic":
        from invflow.layers.periodic import PeriodicConv

        return PeriodicConv(c, h, w, kernel_size=cfg.periodic_kernel_size)
    from invflow.layers.woodbury import MEWoodbury, WoodburyMixing

    if cfg.mixing == "woodbury":
        return WoodburyMixing(c, h, w, latent_channel=cfg.latent("channel", level, min(c, 16)),
                              latent_spatial=cfg.latent("spatial", level, min(h * w, 16)))
    return MEWoodbury(c, h, w, latent_channel=cfg.latent("channel", level, min(c, 16)),
                      latent_height=cfg.latent("height", level, min(h, 16)),
                      latent_width=cfg.latent("width", level, min(w, 16)))


def make_coupling(cfg: GlowConfig, shape: tuple[int, ...], swap: bool, context: int = 0) -> Flow:
    """The coupling layer named by ``cfg.coupling`` for per-sample ``shape``, reading a context of
    width ``context`` (0: none)."""
    if cfg.coupling == "affine":
        return AffineCoupling(shape, cfg.hidden_channels, swap=swap, context_features=context)
    if cfg.coupling == "additive":
        return AdditiveCoupling(shape, cfg.hidden_channels, swap=swap, context_features=context)
    if cfg.coupling == "spline":
        from invflow.layers.spline import SplineCoupling

        return SplineCoupling(shape, cfg.hidden_channels, swap=swap, bins=cfg.spline_bins,
                              tail_bound=cfg.spline_tail_bound, context_features=context)
    if len(shape) != 3:
        raise ValueError("model.coupling=macow needs image data")
    from invflow.layers.macow import MaCowUnit

    return MaCowUnit(shape[0], cfg.hidden_channels, context_features=context)


def glow_step(cfg: GlowConfig, shape: tuple[int, int, int], level: int, index: int,
              context: int = 0) -> list[Flow]:
    """One Glow step: ActNorm → mixing → coupling (the mixing layers have no conditioner, so they
    stay unconditional in a conditional model)."""
    return mark_place([ActNorm(shape[0]), make_mixing(cfg, shape, level),
                       make_coupling(cfg, shape, swap=index % 2 == 1, context=context)],
                      f"level {level + 1}, step {index + 1}")


def glow_levels(cfg: GlowConfig, shape: tuple[int, int, int], level: int = 0, context: int = 0) -> Flow:
    """Levels ``level..L-1`` on input ``(C, H, W)``, returning flat latents; with a context of width
    ``context``, conditional couplings and factor-out priors and a conditional top Gaussian."""
    c, h, w = shape
    if h % 2 or w % 2:
        raise ValueError(
            f"image size {h}x{w} at level {level} is not divisible by the squeeze factor 2; "
            f"use a data.image_size divisible by 2^{cfg.levels} or fewer model.levels"
        )
    squeezed = (4 * c, h // 2, w // 2)
    flows: list[Flow] = [Squeeze(c)]
    for k in range(cfg.steps_per_level):
        flows += glow_step(cfg, squeezed, level, k, context)
    if level == cfg.levels - 1:
        flows += [ConditionalGaussianPrior(squeezed, context)] if context else []
        flows.append(Flatten(squeezed))
    else:
        inner = glow_levels(cfg, (squeezed[0] - squeezed[0] // 2, *squeezed[1:]), level + 1, context)
        flows.append(FactorOut(squeezed, inner, learn_prior=cfg.split_prior, context_features=context))
    return SequentialFlow(*mark_place(flows, f"level {level + 1}"))


def build_glow(cfg: GlowConfig, shape: tuple[int, ...], context: ContextSpec | None = None) -> FlowModel:
    """A Glow-family ``FlowModel`` for per-sample ``shape`` (images ``(C, H, W)`` or vectors ``(D,)``),
    conditional on ``context`` when given (Kingma & Dhariwal 2018, sec. 5: class-conditional
    couplings and priors)."""
    k = 0 if context is None else context.features
    if len(shape) == 1:
        if cfg.mixing != "lu" or cfg.coupling == "macow":
            raise ValueError(
                f"model.mixing={cfg.mixing!r} / model.coupling={cfg.coupling!r} need image data; on vector "
                "(2D toy) data the Glow step uses mixing 'lu' and an affine, additive or spline coupling"
            )
        dims = shape[0]
        flows: list[Flow] = []
        for step in range(cfg.steps_per_level):
            step_flows = [ActNorm(dims, vector=True), InvConv1x1(dims, lu=True, vector=True),
                          make_coupling(cfg, shape, swap=step % 2 == 1, context=k)]
            flows += mark_place(step_flows, f"step {step + 1}")
        flows += [ConditionalGaussianPrior(shape, k)] if k else []
        return FlowModel(SequentialFlow(*flows), StandardNormal((dims,)), shape, context)
    flows = [LogitTransform(shape, cfg.logit_alpha)] if cfg.logit_alpha is not None else []
    flows.append(glow_levels(cfg, shape, context=k))
    flow = SequentialFlow(*flows)
    numel = shape[0] * shape[1] * shape[2]
    return FlowModel(flow, StandardNormal((numel,)), shape, context)


def build(cfg: GlowConfig, data: DataConfig) -> FlowModel:
    """The registry's builder: a Glow-family model for the per-sample shape of ``data``, conditional
    on the data set's labels or contexts when ``model.conditional``."""
    return build_glow(cfg, input_shape(data), model_context(cfg.conditional, data))
