"""The models compared by ``vs_reference.py``: invflow's and the reference implementations', built
for the same MNIST configuration, each wrapped as a :class:`Contender` with one ``log_prob``.

The references are imported only here, from what the user passes: a checkout of the public
rtqichen/residual-flows repository (``--resflow-ref``) and the installed ``normflows`` package.
invflow itself never imports them. :class:`MissingReference` names what is absent.
"""
from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

import invflow

MNIST_SHAPE = (1, 28, 28)
LOGIT_ALPHA = 1e-5  # invflow's resflow-mnist value, used for both residual flows
INVERSE_TOL = 1e-5  # the reference's fixed-point tolerance (atol = rtol = 1e-5, squared residual)


class MissingReference(RuntimeError):
    """A reference implementation the comparison needs is not available."""


@dataclass
class Contender:
    """One implementation of a model: ``log_prob(x)`` in nats for images ``x`` in [0, 1], the
    hook to run after each optimizer step, and (residual flows) a sampler from latents."""

    name: str
    model: nn.Module
    log_prob: Callable[[Tensor], Tensor]
    after_step: Callable[[], None] = lambda: None
    inverse: Callable[[Tensor], Tensor] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class ResFlowSize:
    blocks: int
    hidden: int


@dataclass(frozen=True)
class GlowSize:
    levels: int
    steps: int
    hidden: int


RESFLOW_SIZES = {"small": ResFlowSize(4, 64), "full": ResFlowSize(16, 512)}  # full = resflow-mnist
GLOW_SIZES = {"small": GlowSize(2, 8, 128), "full": GlowSize(2, 32, 512)}  # full = glow-mnist


# -------------------------------------------------------------------------------------- invflow
def invflow_resflow(size: ResFlowSize, **overrides: object) -> Contender:
    """invflow's Residual Flow: 3 scales, LipSwish, 3-1-3 kernels, coeff 0.98, Poisson roulette with
    2 exact terms, 1 Gaussian probe, Neumann gradient computed in the forward (resflow-mnist);
    ``overrides`` are more ``section.key`` settings."""
    config = invflow.load_config("resflow-mnist", {
        "model.blocks_per_scale": size.blocks, "model.hidden_channels": size.hidden,
        "model.logit_alpha": LOGIT_ALPHA, **overrides})
    model = invflow.build_model(config)
    for block in model.blocks():
        block.inverse_atol, block.inverse_rtol = math.sqrt(INVERSE_TOL), 0.0

    def inverse(z: Tensor) -> Tensor:
        return model.flow.inverse_without_logdet(z.reshape(z.shape[0], -1))

    return Contender("invflow", model, model.log_prob, model.after_optimizer_step, inverse)


#: ``log_prob(x)`` of a contender
LogProb = Callable[[Tensor], Tensor]


def invflow_glow(size: GlowSize, compiled: bool = False) -> Contender:
    """invflow's Glow: ``levels`` x ``steps`` of ActNorm, LU 1x1 convolution, affine coupling;
    ``compiled``: the model's forward through its ``compile_for_training`` hook (``--compile``)."""
    config = invflow.load_config(
        "glow-mnist",
        {
            "model.levels": size.levels,
            "model.steps_per_level": size.steps,
            "model.hidden_channels": size.hidden,
        },
    )
    model = invflow.build_model(config)
    if compiled:
        def compile_model() -> LogProb:
            forward = model.compile_for_training(model)
            return lambda x: forward(x)[0]

        return Contender("invflow", model, _compiled_after_first_call(model.log_prob, compile_model))
    return Contender("invflow", model, model.log_prob)


def _compiled_after_first_call(eager: LogProb, compile_: Callable[[], LogProb]) -> LogProb:
    """``eager`` on the first call, where the data-dependent initialisation (ActNorm) happens, then
    what ``compile_()`` returns, as ``invflow train`` compiles after initialising. (Compiled before
    it, each ActNorm's first-batch branch recompiled the graph until dynamo's recompilation limit
    sent the model back to eager.)"""
    compiled: LogProb | None = None

    def run(x: Tensor) -> Tensor:
        nonlocal compiled
        if compiled is None:
            first = eager(x)
            compiled = compile_()
            return first
        return compiled(x)

    return run


# ----------------------------------------------------------------------- rtqichen/residual-flows
def _import_resflows(ref: str | Path | None):
    if ref is None:
        raise MissingReference(
            "the residual-flow reference is missing: pass --resflow-ref PATH to a checkout "
            "of https://github.com/rtqichen/residual-flows"
        )
    root = Path(ref).expanduser().resolve()
    if not (root / "resflows" / "resflow.py").is_file():
        raise MissingReference(f"--resflow-ref {ref}: no resflows/resflow.py there; pass a checkout of "
                               "https://github.com/rtqichen/residual-flows")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("resflows.resflow"), importlib.import_module("resflows.layers")


def reference_resflow(ref: str | Path | None, size: ResFlowSize, batch: int) -> Contender:
    """``ResidualFlow`` of rtqichen/residual-flows as its ``train_img.py`` builds it for MNIST (swish,
    '2222' norms, 3-1-3 kernels, FC blocks at the end, first resblock, actnorm, Neumann gradient in
    the forward, Poisson with 2 exact terms, spectral-norm tolerance 1e-3), plus that script's
    ``update_lipschitz`` after each optimizer step."""
    resflow, layers = _import_resflows(ref)
    base = importlib.import_module("resflows.layers.base")
    model = resflow.ResidualFlow(
        (batch, *MNIST_SHAPE), n_blocks=[size.blocks] * 3, intermediate_dim=size.hidden, factor_out=False,
        init_layer=layers.LogitTransform(LOGIT_ALPHA), actnorm=True, coeff=0.98, vnorms="2222",
        sn_atol=1e-3, sn_rtol=1e-3, n_dist="poisson", n_samples=1, kernels="3-1-3", activation_fn="swish",
        fc_end=True, fc_idim=128, n_exact_terms=2, preact=True, neumann_grad=True, grad_in_forward=True,
        first_resblock=True)
    normed = [m for m in model.modules() if isinstance(m, (
        base.SpectralNormConv2d, base.SpectralNormLinear, base.InducedNormConv2d, base.InducedNormLinear))]

    def update_lipschitz() -> None:
        with torch.no_grad():
            for m in normed:
                m.compute_weight(update=True)

    def log_prob(x: Tensor) -> Tensor:
        z, delta_logp = model(x, torch.zeros(x.shape[0], 1, device=x.device, dtype=x.dtype))
        return _standard_normal_log_prob(z) - delta_logp.reshape(-1)

    def inverse(z: Tensor) -> Tensor:
        return model.inverse(z.reshape(z.shape[0], -1))

    return Contender("residual-flows", model, log_prob, update_lipschitz, inverse)


def _standard_normal_log_prob(z: Tensor) -> Tensor:
    z = z.reshape(z.shape[0], -1)
    return -0.5 * (z.pow(2).sum(dim=1) + z.shape[1] * math.log(2 * math.pi))


# -------------------------------------------------------------------------------------- normflows
def reference_glow(size: GlowSize, compiled: bool = False) -> Contender:
    """normflows' ``MultiscaleFlow`` of ``GlowBlock`` s (affine coupling with sigmoid scale, LU 1x1
    convolution, ActNorm) with ``GlowBase`` latents, as its Glow example builds it; ``compiled``: its
    ``log_prob`` through ``torch.compile``."""
    try:
        nf = importlib.import_module("normflows")
    except ImportError:
        raise MissingReference("the Glow reference is missing: pip install normflows==1.7.3") from None
    c, h, w = MNIST_SHAPE
    levels = size.levels
    q0, flows, merges = [], [], []
    for i in range(levels):
        channels = c * 2 ** (levels + 1 - i)
        flows.append([nf.flows.GlowBlock(channels, size.hidden, split_mode="channel", scale=True)
                      for _ in range(size.steps)] + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (levels - i), h // 2 ** (levels - i), w // 2 ** (levels - i))
        else:
            latent = (c * 2 ** (levels + 1), h // 2 ** levels, w // 2 ** levels)
        q0.append(nf.distributions.GlowBase(latent))
    model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)

    def log_prob(x: Tensor) -> Tensor:
        return model.log_prob(x, None)

    if compiled:
        return Contender("normflows", model,
                         _compiled_after_first_call(log_prob, lambda: torch.compile(log_prob)))
    return Contender("normflows", model, log_prob)
