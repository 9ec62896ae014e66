"""The invertible residual block ``y = x + g(x)``, ``Lip(g) < 1`` (Behrmann et al. 2019;
Chen et al. 2019), and its fixed-point inverse."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from invflow.core.context import check_layer_context
from invflow.core.flow import Flow, check_shape
from invflow.residual.compiled_chain import CompiledChain
from invflow.residual.fixed_point import fixed_point_inverse  # noqa: F401  (its home before fixed_point.py)
from invflow.residual.forward_jacobian import forward_with_jacobian, supports_forward_jacobian
from invflow.residual.implicit_inverse import implicit_fixed_point_inverse
from invflow.residual.logdet import (
    N_DISTRIBUTIONS,
    NEUMANN_FORMS,
    VJP,
    backward_in_forward,
    check_roulette_param,
    exact_logdet,
    graph_products,
    hutchinson_vector,
    neumann_series,
    power_series,
    roulette_weights,
    sample_roulette_length,
)

DEFAULT_N_DIST_PARAM = {"geometric": 0.5, "poisson": 2.0, "fixed": 0.0}


@dataclass(frozen=True)
class EstimatorDefaults:
    """The log-det estimator's defaults, the one source for ``InvertibleResidualBlock``'s arguments
    and ``ResFlowConfig``'s fields: Chen et al. 2019's choice (sec. 3.1-3.2, appendix E): a
    Poisson-length Russian roulette with 2 exact terms, one Gaussian probe, the Neumann gradient
    in Theorem 2's form (the lower-variance form at equal cost on trained blocks,
    ``benchmarks/neumann_variance.py``), 20 terms always computed in eval."""

    logdet: str = "unbiased"
    gradient: str = "neumann"
    neumann_form: str = "theorem2"
    n_dist: str = "poisson"
    n_exact_terms: int = 2
    n_samples: int = 1
    hutchinson: str = "gaussian"
    eval_terms: int = 20


ESTIMATOR = EstimatorDefaults()


class InvertibleResidualBlock(Flow):
    """``y = x + g(x)`` with an (estimated) ``log|det(I + J_g)|`` (Chen et al. 2019).

    Log-det (``logdet``):

    - ``"exact"``: full Jacobian and ``slogdet``, in training and eval (small inputs only); for
      vectors through a chain of layers that carry their Jacobian forward (the MLPs of
      :func:`~invflow.residual.nets.mlp_residual_net`) in forward mode, else one
      vector–Jacobian product per row;
    - ``"unbiased"``: Russian-roulette power series (Theorem 1): ``n_exact_terms`` terms always,
      then ``N ~ n_dist`` more (``poisson`` with rate ``n_dist_param`` (default 2), ``geometric``
      with ``p = n_dist_param`` (default 0.5), or ``fixed``: no tail, a *biased*
      truncation for ablations and benchmarks), averaged over ``n_samples`` Hutchinson probes
      (``gaussian`` or ``rademacher``).

    Gradient of an ``unbiased`` estimate (``gradient``): ``"backprop"`` through the series
    (memory linear in the number of terms) or ``"neumann"`` (Theorem 2, memory constant; in
    ``neumann_form`` ``"derivative"`` or ``"theorem2"``, see :func:`neumann_logdet`); with
    ``backward_in_forward`` (default) the Neumann gradient is computed inside the forward and
    applied in backward, which requires the loss to weight samples' log-densities equally. In
    every case the returned value is the estimate itself, an unbiased estimate of the log-det.
    Defaults: ``EstimatorDefaults`` (shared with ``ResFlowConfig``).

    Eval mode (``model.eval()``): ``exact`` stays exact; ``unbiased`` keeps the Russian roulette
    (still unbiased) but always computes ``max(n_exact_terms, eval_terms)`` terms, lowering the
    variance; no gradient machinery is built under ``torch.no_grad()``.

    ``compile_series()`` runs the ``unbiased`` estimate through ``torch.compile`` (same draws,
    same values and gradients; :mod:`invflow.residual.compiled_chain`).

    ``last_logdet_stats()`` returns the last forward's per-sample estimate and its moments.
    ``inverse`` runs :func:`~invflow.residual.fixed_point.fixed_point_inverse`;
    ``last_inverse_iterations`` records its count. With gradients enabled the inverse is
    differentiated implicitly (:func:`~invflow.residual.implicit_inverse.implicit_fixed_point_inverse`:
    the backward solves ``(I + J_g(x))ᵀ u = v`` by the same iteration, memory flat in the iteration
    count), so ``rsample`` and ``rsample_and_log_prob`` work through residual blocks; under
    ``torch.no_grad()`` it is the plain iteration.

    Conditional blocks: a ``g`` with ``context_features > 0`` (``conv_residual_net`` /
    ``mlp_residual_net`` built with ``context_features``) computes ``g(x, c)``, where the context
    only shifts hidden pre-activations, so ``Lip_x g(·, c) ≤ coeff^k`` for every ``c`` and the
    block is ``y = x + g(x, c)``, invertible for each ``c``, with every estimator above applied in
    ``x`` with ``c`` held fixed. A ``g`` without context ignores the block's ``context``.
    """

    #: the fixed-point inverse is differentiated implicitly (gradients in z, g's parameters and c)
    differentiable_inverse = True

    def __init__(
        self,
        g: nn.Module,
        shape: tuple[int, ...],
        logdet: str = ESTIMATOR.logdet,
        gradient: str = ESTIMATOR.gradient,
        neumann_form: str = ESTIMATOR.neumann_form,
        n_dist: str = ESTIMATOR.n_dist,
        n_dist_param: float | None = None,
        n_exact_terms: int = ESTIMATOR.n_exact_terms,
        n_samples: int = ESTIMATOR.n_samples,
        hutchinson: str = ESTIMATOR.hutchinson,
        eval_terms: int = ESTIMATOR.eval_terms,
        backward_in_forward: bool = True,
        inverse_atol: float | None = None,
        inverse_rtol: float | None = None,
        inverse_max_iter: int = 1000,
    ) -> None:
        super().__init__()
        if logdet not in ("exact", "unbiased"):
            raise ValueError(f"logdet must be 'exact' or 'unbiased', got {logdet!r}")
        if gradient not in ("backprop", "neumann"):
            raise ValueError(f"gradient must be 'backprop' or 'neumann', got {gradient!r}")
        if neumann_form not in NEUMANN_FORMS:
            raise ValueError(f"neumann_form must be one of {NEUMANN_FORMS}, got {neumann_form!r}")
        if n_dist not in N_DISTRIBUTIONS:
            raise ValueError(f"n_dist must be one of {N_DISTRIBUTIONS}, got {n_dist!r}")
        if hutchinson not in ("gaussian", "rademacher"):
            raise ValueError(f"hutchinson must be 'gaussian' or 'rademacher', got {hutchinson!r}")
        if n_exact_terms < 0 or n_samples < 1 or eval_terms < 0:
            raise ValueError("need n_exact_terms >= 0, n_samples >= 1 and eval_terms >= 0")
        self.g = g
        self.shape = tuple(shape)
        self.logdet = logdet
        self.gradient = gradient
        self.neumann_form = neumann_form
        self.n_dist = n_dist
        self.n_dist_param = DEFAULT_N_DIST_PARAM[n_dist] if n_dist_param is None else float(n_dist_param)
        check_roulette_param(n_dist, self.n_dist_param)
        self.n_exact_terms = n_exact_terms
        self.n_samples = n_samples
        self.hutchinson = hutchinson
        self.eval_terms = eval_terms
        self.backward_in_forward = backward_in_forward
        self.inverse_atol = inverse_atol
        self.inverse_rtol = inverse_rtol
        self.inverse_max_iter = inverse_max_iter
        self.last_inverse_iterations = 0
        # decided once: the structure of g does not change between forwards (an attribute, so a
        # benchmark can switch an exact block back to the reverse-mode rows)
        self.carries_jacobian = len(self.shape) == 1 and supports_forward_jacobian(g)
        self.context_features = int(getattr(g, "context_features", 0))
        self._stats: dict[str, Tensor | int] = {}
        self.compiled_chain: CompiledChain | None = None

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, logdet={self.logdet!r}, gradient={self.gradient!r}, n_dist={self.n_dist!r}"
        )

    def _check(self, x: Tensor, where: str) -> None:
        check_shape(x, self.shape, f"{type(self).__name__}.{where}")

    def _residual(self, context: Tensor | None, batch: int
                  ) -> tuple[Callable[[Tensor], Tensor], Tensor | None]:
        """``x ↦ g(x, c)`` for this call's (checked) context, and that context."""
        context = check_layer_context(context, self.context_features, batch, self.describe())
        if context is None:
            return self.g, None
        return partial(self.g, context=context), context

    def _differentiable_inputs(self, context: Tensor | None) -> list[Tensor]:
        """What ``g(x, c)`` depends on besides ``x`` and needs a gradient for: its parameters, and
        the context when it is learned (the Neumann gradient's and the implicit inverse's inputs)."""
        inputs = [p for p in self.g.parameters() if p.requires_grad]
        if context is not None and context.requires_grad:
            inputs.append(context)
        return inputs

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, "forward")
        if torch.is_autocast_enabled(x.device.type):
            raise ValueError(f"{self.describe()}: residual blocks do not run under torch.autocast: the power "
                             "series and the fixed-point inverse rely on Lip(g) < 1, which low-precision "
                             "rounding of the normalised weights can break; run them in float32 or float64")
        g, context = self._residual(context, x.shape[0])
        if self.logdet == "exact" and self.carries_jacobian:
            return self._forward_mode_exact(x, context)
        params = self._differentiable_inputs(context)
        need_grad = torch.is_grad_enabled() and (x.requires_grad or bool(params))
        if self.logdet == "unbiased" and self.compiled_chain is not None:
            xr = x.detach().requires_grad_(True) if need_grad and not x.requires_grad else x
            with torch.set_grad_enabled(need_grad):
                chain = self.compiled_chain.forward(xr, context)
                if need_grad and self.gradient == "neumann" and self.backward_in_forward:
                    live_vjp, cut = chain.detached()
                else:
                    live_vjp, cut = chain.live_vjp, None
                logdet = self._estimate(xr, chain.vjp, live_vjp, params, need_grad, cut)
                gx = chain.gx
            return x + gx, logdet
        with torch.enable_grad():
            xr = x if (need_grad and x.requires_grad) else x.detach().requires_grad_(True)
            gx = g(xr)
            if self.logdet == "exact":
                logdet = exact_logdet(gx, xr, create_graph=need_grad)
                self._stats = {"estimate": logdet.detach(), "n_terms": 0}
            else:
                logdet = self._estimate(xr, *graph_products(gx, xr), params, need_grad)
        y = x + gx
        if not need_grad:
            y, logdet = y.detach(), logdet.detach()
        return y, logdet

    def compile_series(self, backend: str | None = "inductor") -> None:
        """Run the unbiased log-det (value, Neumann or backprop gradient, eval) through ``torch.compile``
        (:mod:`invflow.residual.compiled_chain`: ``g`` as an explicit chain whose vector–Jacobian
        products need first-order autograd only); ``None`` returns to the eager path. The estimate
        is the same function of the same random draws; an ``exact`` log-det and the fixed-point
        inverse stay eager. A ``ValueError`` names a layer of ``g`` the chain cannot express."""
        self.compiled_chain = None if backend is None else CompiledChain(self.g, backend)

    def _forward_mode_exact(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """The exact log-det of a vector block from its Jacobian carried forward with the
        activations (:mod:`invflow.residual.forward_jacobian`): one plain backward to train, no
        double backward, no graph at all under ``torch.no_grad()``."""
        gx, jac_t = forward_with_jacobian(self.g, x, context)
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        logdet = torch.linalg.slogdet(eye + jac_t).logabsdet
        self._stats = {"estimate": logdet.detach(), "n_terms": 0}
        return x + gx, logdet

    def _estimate(self, x: Tensor, vjp: VJP, live_vjp: VJP, params: list[Tensor], need_grad: bool,
                  cut: tuple[list[Tensor], list[Tensor], list[Tensor]] | None = None) -> Tensor:
        """The Russian-roulette estimate from the products ``vjp(u) = uᵀ J_g(x)`` (no graph) and
        ``live_vjp`` (differentiable), carrying the configured gradient when ``need_grad``.
        With ``backward_in_forward`` the Neumann gradient is taken in ``x`` and ``params``, or,
        given ``cut = (per_sample, shared, into)``, in the leaves ``live_vjp`` reads and passed
        on to the tensors ``into`` in the model's backward."""
        exact_terms = self.n_exact_terms if self.training else max(self.n_exact_terms, self.eval_terms)
        extra = sample_roulette_length(self.n_dist, self.n_dist_param)
        weights = roulette_weights(exact_terms, extra, self.n_dist, self.n_dist_param)
        neumann = need_grad and self.gradient == "neumann"
        values, surrogates = [], []
        for _ in range(self.n_samples):
            v = hutchinson_vector(x, self.hutchinson)
            if neumann:
                value, surrogate = neumann_series(vjp, live_vjp, v, weights, self.neumann_form)
                values.append(value)
                surrogates.append(surrogate)
            else:
                values.append(power_series(live_vjp if need_grad else vjp, v, weights))
        draws = torch.stack(values)
        estimate = draws.mean(dim=0)
        self._stats = {
            "estimate": estimate.detach(),
            "probe_var": draws.detach().var(dim=0)
            if self.n_samples > 1
            else torch.full_like(estimate.detach(), float("nan")),
            "n_terms": len(weights),
        }
        if not neumann:
            return estimate
        surrogate = torch.stack(surrogates).mean(dim=0)
        if self.backward_in_forward:
            if cut is None:
                return backward_in_forward(estimate, surrogate, [x], params)
            return backward_in_forward(estimate, surrogate, *cut)
        return estimate.detach() + (surrogate - surrogate.detach())

    def last_logdet_stats(self) -> dict[str, Tensor | int]:
        """The last forward's log-det draw (detached tensors, no host sync):

        ``estimate`` (B,) the per-sample estimate; ``probe_var`` (B,) the variance across the
        ``n_samples`` Hutchinson probes (NaN when ``n_samples == 1``); ``n_terms`` the number of
        series terms computed (0 for ``exact``). Its mean and variance over repeated draws give
        the estimator's standard error.
        """
        return dict(self._stats)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(x, −log|det(I + J_g(x))|)`` with ``x + g(x) = z``: the fixed-point inverse, then the
        block's log-det estimate at ``x`` (one forward pass; stochastic for ``unbiased``); both
        differentiable when gradients are enabled (the estimate as in ``forward``)."""
        x = self.inverse_without_logdet(z, context)
        return x, -self(x, context)[1]

    def inverse_without_logdet(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``x`` with ``x + g(x) = z`` by fixed-point iteration, differentiated implicitly in ``z``,
        ``g``'s parameters and a floating context when gradients are enabled."""
        self._check(z, "inverse")
        g, context = self._residual(context, z.shape[0])
        x, iterations = implicit_fixed_point_inverse(
            g, z, self._differentiable_inputs(context), atol=self.inverse_atol, rtol=self.inverse_rtol,
            max_iter=self.inverse_max_iter, backward_max_iter=self.inverse_max_iter, where=self.describe(),
        )
        self.last_inverse_iterations = iterations
        return x
