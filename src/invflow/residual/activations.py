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
    (``d = f'(x)`` passed in precomputed), with the analytic second derivatives; its own
    backward is made of plain operations, so every higher derivative is exact too."""

    @staticmethod
    def forward(grad: Tensor, x: Tensor, beta: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return grad * d, (grad * _beta_derivative(x, beta)).sum()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        grad, x, beta, _ = inputs
        ctx.save_for_backward(grad, x, beta)

    @staticmethod
    def backward(ctx, gg_x: Tensor, gg_beta: Tensor):  # type: ignore[override]
        grad, x, beta = ctx.saved_tensors
        t, s, ss, d = _derivatives(x, beta)
        k = SWISH_LIPSCHITZ_BOUND
        q = ss * (2 + t * (1 - 2 * s)) / k  # f'' = β·q, ∂f'/∂β = x·q
        dss = ss * (1 - 2 * s)  # d s(1−s) / dt
        # a = grad·f'(x) elementwise, b = Σ grad·x²·s(1−s)/K
        g_grad = gg_x * d + gg_beta * (x * x * ss / k)
        g_x = grad * (gg_x * beta * q + gg_beta * (2 * x * ss + x * t * dss) / k)
        g_beta = (grad * (gg_x * x * q + gg_beta * x * x * x * dss / k)).sum()
        return g_grad, g_x, g_beta.reshape(beta.shape), None


class _LipSwishFunction(torch.autograd.Function):
    """``x·σ(βx)/K`` storing ``f'(x)`` for its backward (a second, non-differentiable output)."""

    @staticmethod
    def forward(x: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        t = beta * x
        s = torch.sigmoid(t)
        d = torch.addcmul(s, t, s * (1 - s)).div_(SWISH_LIPSCHITZ_BOUND)
        return (x * s).div_(SWISH_LIPSCHITZ_BOUND), d

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, beta = inputs
        d = output[1]
        ctx.mark_non_differentiable(d)
        ctx.save_for_backward(x, beta, d)
        ctx.beta_edge = torch.autograd.graph.get_gradient_edge(beta).node if ctx.needs_input_grad[1] else None

    @staticmethod
    def backward(ctx, grad: Tensor, _grad_d: Tensor | None = None):  # type: ignore[override]
        x, beta, d = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            if _is_batched(grad):  # vmap cannot nest autograd Functions here: plain operations
                return grad * _derivatives(x, beta)[3], (grad * _beta_derivative(x, beta)).sum().reshape(beta.shape)
            grad_x, grad_beta = _LipSwishBackward.apply(grad, x, beta, d)
            return grad_x, grad_beta.reshape(beta.shape)
        grad_beta = None
        if _beta_grad_needed(ctx.beta_edge):
            grad_beta = (grad * _beta_derivative(x, beta)).sum().reshape(beta.shape)
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
