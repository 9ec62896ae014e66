"""Residual Flow models (Chen et al. 2019, appendix E; docs/architecture.md section 4).

Images: ``LogitTransform(α) → n × ResBlock → [Squeeze → n × ResBlock] × (scales − 1)``, with
ActNorm before and after every block, optionally squeezing first (64x64 data) and factoring
out half the channels after every squeeze. 2D data: ``n`` blocks with MLP ``g``
(appendix D). ``logdet``/``gradient``/``n_dist``… choose each block's estimator
(``invflow.residual.InvertibleResidualBlock`` documents them and what eval mode uses).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from invflow.config import DataConfig, positive
from invflow.core.context import ContextSpec
from invflow.core.distributions import StandardNormal
from invflow.core.flow import Flatten, Flow, SequentialFlow, mark_place
from invflow.core.model import FlowModel
from invflow.data.registry import input_shape
from invflow.layers.actnorm import ActNorm
from invflow.layers.conditional_prior import ConditionalGaussianPrior
from invflow.layers.logit import LogitTransform
from invflow.layers.split import FactorOut
from invflow.layers.squeeze import Squeeze
from invflow.models.conditioning import model_context
from invflow.residual import InvertibleResidualBlock, LearnedNormOrder, conv_residual_net, mlp_residual_net
from invflow.residual.iresblock import ESTIMATOR
from invflow.residual.logdet import check_roulette_param
from invflow.residual.nets import learn_mode, parse_norm_orders


@dataclass
class ResFlowConfig:
    """``model`` section of a Residual Flow preset."""

    SECTION = "model"
    scales: int = 3
    blocks_per_scale: int = 16
    hidden_channels: int = 512
    squeeze_first: bool = False
    factor_out: bool = False
    actnorm: bool = True
    logit_alpha: float | None = 1e-5
    coeff: float = 0.98
    # the estimator's defaults live in one place, invflow.residual.EstimatorDefaults
    logdet: Literal["exact", "unbiased"] = ESTIMATOR.logdet
    gradient: Literal["backprop", "neumann"] = ESTIMATOR.gradient
    neumann_form: Literal["derivative", "theorem2"] = ESTIMATOR.neumann_form  # residual/logdet.py
    n_dist: Literal["geometric", "poisson"] = ESTIMATOR.n_dist
    n_dist_param: float | None = None
    n_exact_terms: int = ESTIMATOR.n_exact_terms
    n_samples: int = ESTIMATOR.n_samples
    hutchinson: Literal["gaussian", "rademacher"] = ESTIMATOR.hutchinson
    eval_terms: int = ESTIMATOR.eval_terms
    eval_draws: int = 4
    norm_orders: str | None = None
    learn_norm_orders: bool | Literal["shared", "per-state"] = False  # true = per-state (app. D)
    mlp_hidden_layers: int = 3
    conditional: bool = False  # p(x | y): the data set's labels (or toy contexts), see build()
    # the Neumann gradient computed inside the forward (Chen et al. 2019, app. C: memory); it needs
    # a loss that weights every sample's log-density equally, so turn it off for weighted losses
    backward_in_forward: bool = True

    def validate(self) -> None:
        positive(self, "scales", "blocks_per_scale", "hidden_channels", "n_samples", "eval_draws",
                 "mlp_hidden_layers", "coeff", "n_dist_param")
        if not 0 < self.coeff < 1:
            raise ValueError(f"model.coeff must be in (0, 1) so that Lip(g) < 1, got {self.coeff}")
        if self.n_exact_terms < 0 or self.eval_terms < 0:
            raise ValueError("model.n_exact_terms and model.eval_terms must be >= 0")
        if self.logit_alpha is not None and not 0 <= self.logit_alpha < 0.5:
            raise ValueError(f"model.logit_alpha must be in [0, 0.5), got {self.logit_alpha}")
        if self.norm_orders is not None:
            parse_norm_orders(self.norm_orders, 3)
        if learn_mode(self.learn_norm_orders) == "shared" and self.norm_orders is not None \
                and len(set(parse_norm_orders(self.norm_orders, 3))) != 1:
            raise ValueError(
                "model.learn_norm_orders=shared learns one order per block; model.norm_orders must "
                f"give one initial order, got {self.norm_orders!r}"
            )
        if self.n_dist_param is not None:
            try:
                check_roulette_param(self.n_dist, self.n_dist_param)
            except ValueError as err:
                raise ValueError(f"model.{err}") from None

    def block(self, g: torch.nn.Module, shape: tuple[int, ...]) -> InvertibleResidualBlock:
        """One invertible residual block with this config's log-det estimator."""
        return InvertibleResidualBlock(
            g, shape, logdet=self.logdet, gradient=self.gradient, neumann_form=self.neumann_form,
            n_dist=self.n_dist, n_dist_param=self.n_dist_param, n_exact_terms=self.n_exact_terms,
            n_samples=self.n_samples, hutchinson=self.hutchinson, eval_terms=self.eval_terms,
            backward_in_forward=self.backward_in_forward,
        )


class ResFlowModel(FlowModel):
    """A ``FlowModel`` of residual blocks: logs learned norm orders and estimator statistics,
    and evaluates with ``eval_draws`` log-det draws per image."""

    low_precision_unsupported = ("residual blocks' power series and fixed-point inverse rely on Lip(g) < 1, "
                                 "which low-precision rounding breaks")

    def __init__(
        self, flow: Flow, prior: StandardNormal, input_shape: tuple[int, ...], config: ResFlowConfig,
        context: ContextSpec | None = None,
    ) -> None:
        super().__init__(flow, prior, input_shape, context)
        self.eval_draws = config.eval_draws
        self.estimator = describe_estimator(config)

    def blocks(self) -> list[InvertibleResidualBlock]:
        return [m for m in self.modules() if isinstance(m, InvertibleResidualBlock)]

    def training_stats(self) -> dict[str, float]:
        """Learned norm orders (``norm_order/<i>``) and the last draw's series length and log-det."""
        stats = {f"norm_order/{i}": float(m().detach()) for i, m in
                 enumerate(m for m in self.modules() if isinstance(m, LearnedNormOrder))}
        drawn = [b.last_logdet_stats() for b in self.blocks()]
        if drawn and "estimate" in drawn[0]:
            stats["logdet_terms"] = float(sum(d["n_terms"] for d in drawn)) / len(drawn)
            stats["logdet_mean"] = float(sum(d["estimate"].mean() for d in drawn))
        return stats

    @property
    def compile_unsupported(self) -> str | None:  # type: ignore[override]
        """Only the unbiased log-det series compiles; an exact log-det model has nothing to compile."""
        if any(block.logdet == "unbiased" for block in self.blocks()):
            return None
        return ("its blocks compute the exact log-det (model.logdet=exact), which stays eager; "
                "torch.compile runs the unbiased log-det series (model.logdet=unbiased)")

    def compile_for_training(self, net: torch.nn.Module) -> torch.nn.Module:
        """``train.compile``: every block's log-det series through ``torch.compile``
        (:meth:`InvertibleResidualBlock.compile_series`; the whole model cannot be traced, its
        series differentiates vector-Jacobian products again); the rest of the model stays eager."""
        for block in self.blocks():
            block.compile_series()
        return net

    def inverse_iteration_counts(self) -> list[int]:
        """Fixed-point iterations the last ``sample``/``inverse`` needed, per block."""
        return [b.last_inverse_iterations for b in self.blocks()]


def describe_estimator(cfg: ResFlowConfig) -> str:
    """One line saying which log-det estimate evaluation reports."""
    if cfg.logdet == "exact":
        return "exact log-det (brute-force Jacobian)"
    terms = max(cfg.n_exact_terms, cfg.eval_terms)
    return (f"unbiased Russian-roulette log-det ({cfg.n_dist} N, {terms} terms always computed in eval, "
            f"{cfg.n_samples} {cfg.hutchinson} probe(s)), averaged over {cfg.eval_draws} draws per image")


def residual_stage(cfg: ResFlowConfig, shape: tuple[int, ...], context: int = 0, scale: int | None = None
                   ) -> list[Flow]:
    """``blocks_per_scale`` residual blocks on ``shape``, each between two ActNorms; with a context of
    width ``context``, each ``g(x, c)`` shifts its hidden pre-activations by the context. Each
    block's layers are placed as ``"scale S, block B"`` (``"block B"`` without a ``scale``)."""
    vector = len(shape) == 1
    flows: list[Flow] = []
    for index in range(cfg.blocks_per_scale):
        if vector:
            g = mlp_residual_net(shape[0], cfg.hidden_channels, cfg.mlp_hidden_layers, cfg.coeff,
                                 cfg.norm_orders, cfg.learn_norm_orders, context_features=context)
        else:
            g = conv_residual_net(shape[0], cfg.hidden_channels, cfg.coeff, cfg.norm_orders,
                                  cfg.learn_norm_orders, context_features=context)
        block = cfg.block(g, shape)
        layers = [ActNorm(shape[0], vector=vector), block, ActNorm(shape[0], vector=vector)] if cfg.actnorm \
            else [block]
        flows += mark_place(layers, ("" if scale is None else f"scale {scale + 1}, ") + f"block {index + 1}")
    return flows


def squeezed(shape: tuple[int, int, int], where: str) -> tuple[int, int, int]:
    c, h, w = shape
    if h % 2 or w % 2:
        raise ValueError(f"image size {h}x{w} {where} is not divisible by the squeeze factor 2; "
                         "use a data.image_size the model's squeezes allow or fewer model.scales")
    return (4 * c, h // 2, w // 2)


def resflow_scales(cfg: ResFlowConfig, shape: tuple[int, int, int], scale: int = 0, context: int = 0) -> Flow:
    """Scales ``scale..scales-1`` on ``(C, H, W)``, returning flat latents; with a context of width
    ``context``, conditional blocks and factor-out priors and a conditional top Gaussian."""
    flows = residual_stage(cfg, shape, context, scale)
    if scale == cfg.scales - 1:
        top = [ConditionalGaussianPrior(shape, context)] if context else []
        return SequentialFlow(*mark_place([*flows, *top, Flatten(shape)], f"scale {scale + 1}"))
    after = squeezed(shape, f"at scale {scale + 1}")
    if cfg.factor_out:
        kept = (after[0] - after[0] // 2, *after[1:])
        inner = resflow_scales(cfg, kept, scale + 1, context)
        rest: list[Flow] = [Squeeze(shape[0]), FactorOut(after, inner, context_features=context)]
    else:
        rest = [Squeeze(shape[0]), resflow_scales(cfg, after, scale + 1, context)]
    return SequentialFlow(*mark_place([*flows, *rest], f"scale {scale + 1}"))


def input_flows(cfg: ResFlowConfig, shape: tuple[int, int, int]) -> tuple[list[Flow], tuple[int, int, int]]:
    """The logit transform and the optional first squeeze, and the shape they leave."""
    flows: list[Flow] = [LogitTransform(shape, cfg.logit_alpha)] if cfg.logit_alpha is not None else []
    if cfg.squeeze_first:
        flows.append(Squeeze(shape[0]))
        shape = squeezed(shape, "before the first scale")
    return flows, shape


def build_resflow(cfg: ResFlowConfig, shape: tuple[int, ...],
                  context: ContextSpec | None = None) -> ResFlowModel:
    """A Residual Flow for per-sample ``shape`` (images ``(C, H, W)`` or vectors ``(D,)``), conditional
    on ``context`` when given."""
    k = 0 if context is None else context.features
    if len(shape) == 1:
        top = [ConditionalGaussianPrior(shape, k)] if k else []
        flow = SequentialFlow(*residual_stage(cfg, shape, k), *top)
        return ResFlowModel(flow, StandardNormal(shape), shape, cfg, context)
    flows, inner_shape = input_flows(cfg, shape)
    flow = SequentialFlow(*flows, resflow_scales(cfg, inner_shape, context=k))
    return ResFlowModel(flow, StandardNormal((shape[0] * shape[1] * shape[2],)), shape, cfg, context)


def build(cfg: ResFlowConfig, data: DataConfig) -> ResFlowModel:
    """The registry's builder: a Residual Flow for the per-sample shape of ``data``, conditional on
    the data set's labels or contexts when ``model.conditional``."""
    return build_resflow(cfg, input_shape(data), model_context(cfg.conditional, data))
