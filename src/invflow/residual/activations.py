"""LipSwish, the 1-Lipschitz activation of Residual Flows (Chen et al. 2019, sec. 3.3), fused.

``f(x) = x·σ(βx)/K`` with ``K = 1.1``. With ``t = βx`` and ``s = σ(t)``:

- ``f'(x) = (s + t·s(1−s)) / K``,            ``∂f/∂β = x²·s(1−s) / K``;
- ``f''(x) = β·q``, ``∂f'/∂β = x·q`` with ``q = s(1−s)·(2 + t(1−2s)) / K``.

The log-det series of a residual block backpropagates through the activation once per term
(vector–Jacobian products) and then differentiates one of those products again (the Neumann
surrogate). Autograd's own graph of ``x * sigmoid(beta * x) / 1.1`` replays five elementwise
nodes per product; :class:`_LipSwishFunction` stores ``f'(x)`` once in the forward, so each
product is one multiplication, and its backward is itself a differentiable function
(:class:`_LipSwishBackward`) with the analytic second derivatives above, so double backward
is exact (checked against the unfused expression by ``gradgradcheck`` in the tests).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# max_t d/dt [t·sigmoid(t)] = 1.0998… for every β (the derivative depends on βx only), so
# dividing by 1.1 makes the map 1-Lipschitz elementwise, hence in every p-norm.
SWISH_LIPSCHITZ_BOUND = 1.1


def lipswish_reference(x: Tensor, beta: Tensor) -> Tensor:
    """The unfused expression ``x·σ(βx)/1.1``, differentiated by autograd (tests compare against it)."""
    return x * torch.sigmoid(beta * x) / SWISH_LIPSCHITZ_BOUND


def _beta_grad_needed(edge: object | None) -> bool:
    """Whether the running backward pass will use the gradient of β (the series' vector–Jacobian
    products ask for the gradient of ``x`` only, so β's reduction is skipped there)."""
    if edge is None:
        return False
    will_execute = getattr(torch._C, "_will_engine_execute_node", None)
    if will_execute is None:  # pragma: no cover - older torch: always compute
        return True
    try:
        return bool(will_execute(edge))
    except RuntimeError:  # pragma: no cover - not called from inside the engine
        return True


def _is_batched(t: Tensor) -> bool:
    """Whether ``t`` is batched by ``vmap`` (``is_grads_batched`` backward passes use the legacy
    batching), where an autograd Function cannot be nested in another's backward."""
    functorch = getattr(torch._C, "_functorch", None)
    checks = [getattr(functorch, n, None) for n in ("is_legacy_batchedtensor", "is_batchedtensor")]
    return any(bool(check(t)) for check in checks if check is not None)


def _derivatives(x: Tensor, beta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(t, s, s(1−s), f'(x))`` by plain differentiable operations."""
    t = beta * x
    s = torch.sigmoid(t)
    ss = s * (1 - s)
    return t, s, ss, (s + t * ss) / SWISH_LIPSCHITZ_BOUND


def _beta_derivative(x: Tensor, beta: Tensor) -> Tensor:
    """``∂f/∂β = x²·s(1−s)/K`` elementwise."""
    s = torch.sigmoid(beta * x)
    return x * x * s * (1 - s) / SWISH_LIPSCHITZ_BOUND


class _LipSwishBackward(torch.autograd.Function):
    """``(grad·f'(x), Σ grad·∂f/∂β)``, the backward of LipSwish as a function of ``(grad, x, β)``
    (``d = f'(x)`` and ``s = σ(βx)`` passed in from the forward; the β term only when
    ``with_beta``), with the analytic second derivatives; its own backward is made of plain
    operations, so every higher derivative is exact too."""

    @staticmethod
    def forward(grad: Tensor, x: Tensor, beta: Tensor, d: Tensor, s: Tensor, with_beta: bool) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        grad_beta = (grad * x * x * s * (1 - s)).sum() / SWISH_LIPSCHITZ_BOUND if with_beta else beta.new_zeros(())
        return grad * d, grad_beta

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        grad, x, beta, d, s, _ = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(grad, x, beta, d, s)

    @staticmethod
    def backward(ctx, gg_x: Tensor | None, gg_beta: Tensor | None):  # type: ignore[override]
        grad, x, beta, d, s = ctx.saved_tensors
        k = SWISH_LIPSCHITZ_BOUND
        t = beta * x
        ss = s * (1 - s)
        one_m_2s = 1 - 2 * s
        q = ss * (2 + t * one_m_2s)  # K·q: f'' = β·q/K, ∂f'/∂β = x·q/K
        g_grad = g_x = g_beta = None
        if gg_x is not None:
            g_grad = gg_x * d
            ggq = grad * gg_x * q
            g_x = ggq * (beta / k)
            g_beta = (ggq * x).sum() / k
        if gg_beta is not None:  # b = Σ grad·x²·s(1−s)/K
            dss = ss * one_m_2s  # d s(1−s) / dt
            b_grad = gg_beta * (x * x * ss / k)
            b_x = grad * gg_beta * (2 * x * ss + x * t * dss) / k
            b_beta = (grad * gg_beta * x * x * x * dss).sum() / k
            g_grad = b_grad if g_grad is None else g_grad + b_grad
            g_x = b_x if g_x is None else g_x + b_x
            g_beta = b_beta if g_beta is None else g_beta + b_beta
        return g_grad, g_x, None if g_beta is None else g_beta.reshape(beta.shape), None, None, None


class _LipSwishFunction(torch.autograd.Function):
    """``x·σ(βx)/K`` storing ``f'(x)`` and ``σ(βx)`` for its backward (non-differentiable outputs)."""

    @staticmethod
    def forward(x: Tensor, beta: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        t = beta * x
        s = torch.sigmoid(t)
        d = torch.addcmul(s, t, s * (1 - s)).mul_(1 / SWISH_LIPSCHITZ_BOUND)
        return (x * s).mul_(1 / SWISH_LIPSCHITZ_BOUND), d, s

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, beta = inputs
        _, d, s = output
        ctx.mark_non_differentiable(d, s)
        ctx.save_for_backward(x, beta, d, s)
        ctx.beta_edge = torch.autograd.graph.get_gradient_edge(beta).node if ctx.needs_input_grad[1] else None

    @staticmethod
    def backward(ctx, grad: Tensor, _grad_d: Tensor | None = None, _grad_s: Tensor | None = None):  # type: ignore[override]
        x, beta, d, s = ctx.saved_tensors
        with_beta = _beta_grad_needed(ctx.beta_edge)
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            if _is_batched(grad):  # vmap cannot nest autograd Functions here: plain operations
                return grad * _derivatives(x, beta)[3], (grad * _beta_derivative(x, beta)).sum().reshape(beta.shape)
            grad_x, grad_beta = _LipSwishBackward.apply(grad, x, beta, d, s, with_beta)
            return grad_x, grad_beta.reshape(beta.shape) if with_beta else None
        grad_beta = None
        if with_beta:
            grad_beta = (grad * x * x * s * (1 - s)).sum().reshape(beta.shape) / SWISH_LIPSCHITZ_BOUND
        return grad * d, grad_beta


def lipswish(x: Tensor, beta: Tensor) -> Tensor:
    """Fused ``x·σ(βx)/1.1`` (values and first and second derivatives equal to
    :func:`lipswish_reference`)."""
    if not torch.is_grad_enabled() or not (x.requires_grad or beta.requires_grad):
        return lipswish_reference(x, beta)
    return _LipSwishFunction.apply(x, beta)[0]


class LipSwish(nn.Module):
    """``x · sigmoid(βx) / 1.1`` with learned ``β = softplus(ρ) > 0`` (Chen et al. 2019, sec. 3.3).

    ``beta`` sets the initial β (default 1; Swish with β = 1 is SiLU).
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"LipSwish needs beta > 0, got {beta}")
        self.rho = nn.Parameter(torch.tensor(math.log(math.expm1(beta))))

    @property
    def beta(self) -> Tensor:
        return F.softplus(self.rho)

    def forward(self, x: Tensor) -> Tensor:
        return lipswish(x, self.beta)
