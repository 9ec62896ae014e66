"""Glow-family models (Kingma & Dhariwal 2018; Lu & Huang 2020, docs/architecture.md section 5).

Multi-scale: L levels, each ``Squeeze → K × (ActNorm → mixing → coupling)``, then a factor-out
of half the channels with a learned conditional Gaussian prior (all but the last level). The
mixing layer and the coupling are the ones ``model.mixing`` and ``model.coupling`` name in the
registries of ``invflow.layers.registry``. On 2D toy data the same step (ActNorm → linear LU mixing →
coupling) is stacked without squeezes.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from invflow.config import DataConfig, positive
from invflow.core.context import ContextSpec
from invflow.core.distributions import StandardNormal
from invflow.core.flow import Flatten, Flow, SequentialFlow, mark_place
from invflow.core.model import FlowModel
from invflow.data.registry import input_shape
from invflow.layers.actnorm import ActNorm
from invflow.layers.choices import CouplingChoice, MixingChoice
from invflow.layers.conditional_prior import ConditionalGaussianPrior
from invflow.layers.coupling import AffineChoice
from invflow.layers.invconv import LUMixing
from invflow.layers.logit import LogitTransform
from invflow.layers.split import FactorOut
from invflow.layers.squeeze import Squeeze
from invflow.models.class_term import ClassPredictingFlowModel
from invflow.models.conditioning import model_context

LEGACY_OPTIONS = {  # the flat keys of invflow <= 0.3 -> (layer name, option of its nested section)
    "woodbury_latent_channel": (("woodbury", "me-woodbury"), "latent_channel"),
    "woodbury_latent_spatial": (("woodbury",), "latent_spatial"),
    "woodbury_latent_height": (("me-woodbury",), "latent_height"),
    "woodbury_latent_width": (("me-woodbury",), "latent_width"),
    "emerging_kernel_size": (("emerging",), "kernel_size"),
    "periodic_kernel_size": (("periodic",), "kernel_size"),
    "spline_bins": (("spline",), "bins"),
    "spline_tail_bound": (("spline",), "tail_bound"),
}


@dataclass
class GlowConfig:
    """``model`` section of a Glow-family preset. ``mixing`` and ``coupling`` are nested sections
    naming a registered layer and its options (``invflow.layers.choices``), e.g.
    ``mixing: {name: woodbury, latent_channel: [8, 8, 16], latent_spatial: [16, 16, 8]}``."""

    SECTION = "model"
    levels: int = 3
    steps_per_level: int = 32
    hidden_channels: int = 512
    mixing: MixingChoice = field(default_factory=LUMixing)
    coupling: CouplingChoice = field(default_factory=AffineChoice)
    split_prior: bool = True
    logit_alpha: float | None = None
    conditional: bool = False  # p(x | y): the data set's labels (or toy contexts), see build()
    # w of Glow's class-prediction term bits/dim + w·bits_y (invflow.models.class_term); 0: none
    class_loss_weight: float = 0.0
    # the context's mean and log-scale in the top and factor-out priors: one per channel (Glow's,
    # broadcast over the grid) or one per channel and position (a mean latent map per class)
    context_prior: Literal["channel", "position"] = "channel"

    def validate(self) -> None:
        positive(self, "levels", "steps_per_level", "hidden_channels")
        if self.logit_alpha is not None and not 0 <= self.logit_alpha < 0.5:
            raise ValueError(f"model.logit_alpha must be in [0, 0.5), got {self.logit_alpha}")
        if not 0 <= self.class_loss_weight < math.inf:
            raise ValueError(
                f"model.class_loss_weight must be a finite number >= 0, got {self.class_loss_weight}")
        if self.class_loss_weight and not self.conditional:
            raise ValueError("model.class_loss_weight needs model.conditional: true (the term predicts "
                             "the label of a class-conditional model)")
        if self.context_prior == "position" and not self.conditional:
            raise ValueError("model.context_prior: position needs model.conditional: true")
        self.mixing.check_levels(self.levels)
        self.coupling.check_levels(self.levels)

    @classmethod
    def migrate(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """Read the flat layer options of invflow <= 0.3 (``woodbury_latent_channel``,
        ``emerging_kernel_size``, ``spline_bins``, …) into the chosen layer's nested section, with a
        warning naming the new key; the options of layers not chosen, which did nothing, are dropped.
        A flat key beside the same option with another value in the nested section is an error.
        Returns a new mapping."""
        flat = {key: raw[key] for key in LEGACY_OPTIONS if key in raw}
        if not flat:
            return raw
        out = {k: v for k, v in raw.items() if k not in flat}
        moved = []
        defaults = {f.name: f.default_factory().name for f in fields(cls) if f.name in ("mixing", "coupling")}
        for slot, default in defaults.items():
            chosen = out.get(slot, default)
            nested = {"name": chosen} if isinstance(chosen, str) else dict(chosen or {})
            for key, value in flat.items():
                names, option = LEGACY_OPTIONS[key]
                if nested.get("name") not in names:
                    continue
                if option in nested and nested[option] != value:
                    raise ValueError(f"model.{key} and model.{slot}.{option} are the same option; give only "
                                     f"model.{slot}.{option}")
                nested[option] = value
                moved.append(f"model.{key} -> model.{slot}.{option}")
            if len(nested) > 1:
                out[slot] = nested
        if moved:
            warnings.warn(f"flat layer options are deprecated, read as {', '.join(moved)}",
                          DeprecationWarning, stacklevel=4)
        return out


def make_mixing(cfg: GlowConfig, shape: tuple[int, ...], level: int) -> Flow:
    """The mixing layer ``cfg.mixing`` names, for per-sample ``shape`` at ``level``."""
    cfg.mixing.check_data(shape)
    return cfg.mixing.build(shape, level)


def make_coupling(cfg: GlowConfig, shape: tuple[int, ...], swap: bool, context: int = 0) -> Flow:
    """The coupling layer ``cfg.coupling`` names, for per-sample ``shape``, reading a context of
    width ``context`` (0: none)."""
    cfg.coupling.check_data(shape)
    return cfg.coupling.build(shape, cfg.hidden_channels, swap, context)


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
    per_position = cfg.context_prior == "position"
    flows: list[Flow] = [Squeeze(c)]
    for k in range(cfg.steps_per_level):
        flows += glow_step(cfg, squeezed, level, k, context)
    if level == cfg.levels - 1:
        flows += [ConditionalGaussianPrior(squeezed, context, per_position)] if context else []
        flows.append(Flatten(squeezed))
    else:
        inner = glow_levels(cfg, (squeezed[0] - squeezed[0] // 2, *squeezed[1:]), level + 1, context)
        flows.append(FactorOut(squeezed, inner, learn_prior=cfg.split_prior, context_features=context,
                               context_per_position=per_position))
    return SequentialFlow(*mark_place(flows, f"level {level + 1}"))


def build_glow(cfg: GlowConfig, shape: tuple[int, ...], context: ContextSpec | None = None) -> FlowModel:
    """A Glow-family ``FlowModel`` for per-sample ``shape`` (images ``(C, H, W)`` or vectors ``(D,)``),
    conditional on ``context`` when given (Kingma & Dhariwal 2018, sec. 5: class-conditional
    couplings and priors), with Glow's class-prediction term when ``cfg.class_loss_weight`` > 0."""
    k = 0 if context is None else context.features
    if len(shape) == 1 and cfg.context_prior == "position":
        raise ValueError(f"model.context_prior: position needs images, got per-sample shape {tuple(shape)}")
    if len(shape) == 1:
        flows: list[Flow] = []
        for step in range(cfg.steps_per_level):
            step_flows = [ActNorm(shape[0], vector=True), make_mixing(cfg, shape, 0),
                          make_coupling(cfg, shape, swap=step % 2 == 1, context=k)]
            flows += mark_place(step_flows, f"step {step + 1}")
        flows += [ConditionalGaussianPrior(shape, k)] if k else []
    else:
        flows = [LogitTransform(shape, cfg.logit_alpha)] if cfg.logit_alpha is not None else []
        flows.append(glow_levels(cfg, shape, context=k))
    flow, prior = SequentialFlow(*flows), StandardNormal((math.prod(shape),))
    if cfg.class_loss_weight:  # the model refuses what the term cannot fit (vectors, no class labels)
        return ClassPredictingFlowModel(flow, prior, shape, context, cfg.class_loss_weight)
    return FlowModel(flow, prior, shape, context)


def build(cfg: GlowConfig, data: DataConfig) -> FlowModel:
    """The registry's builder: a Glow-family model for the per-sample shape of ``data``, conditional
    on the data set's labels or contexts when ``model.conditional``."""
    return build_glow(cfg, input_shape(data), model_context(cfg.conditional, data))
