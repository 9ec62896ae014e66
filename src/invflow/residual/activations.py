"""LipSwish, the 1-Lipschitz activation of Residual Flows (Chen et al. 2019, sec. 3.3), fused.

``f(x) = x·σ(βx)/K`` with ``K = 1.1``. With ``t = βx`` and ``s = σ(t)``:

- ``f'(x) = (s + t·s(1−s)) / K``,            ``∂f/∂β = x²·s(1−s) / K``;
- ``f''(x) = β·q``, ``∂f'/∂β = x·q`` with ``q = s(1−s)·(2 + t(1−2s)) / K``.

The log-det series of a residual block backpropagates through the activation once per term
(vector–Jacobian products) and then differentiates one of those products again (the Neumann
surrogate). Autograd's own graph of ``x * sigmoid(beta * x) / 1.1`` replays five elementwise
nodes per product; :class:`_LipSwishFunction` stores ``f'(x)`` once in the
forward, so each product is one multiplication, and its backward is
itself a differentiable function (:class:`_LipSwishBackward`) with the analytic second
derivatives above, so double backward is exact (checked against the unfused expression by
``gradgradcheck`` in the tests). On a CPU the cost of these elementwise passes is mostly fresh
memory (page faults on every new hidden-sized tensor), so the forward and the double backward
work in place on a few scratch tensors; the zero gradient of the stored ``f'`` is never
materialised. ``σ(βx)`` is recomputed for β's gradient (once per model backward) rather than
stored, so an activation holds ``x`` and ``f'(x)`` until the model's backward, like autograd's
``x`` and ``σ(βx)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invflow.residual.autograd_pass import gradient_node, is_batched, will_execute

# max_t d/dt [t·sigmoid(t)] = 1.0998… for every β (the derivative depends on βx only), so
# dividing by 1.1 makes the map 1-Lipschitz elementwise, hence in every p-norm.
SWISH_LIPSCHITZ_BOUND = 1.1


def lipswish_reference(x: Tensor, beta: Tensor) -> Tensor:
    """The unfused expression ``x·σ(βx)/1.1``, differentiated by autograd (tests compare against it)."""
    return x * torch.sigmoid(beta * x) / SWISH_LIPSCHITZ_BOUND


def lipswish_derivative(x: Tensor, beta: Tensor) -> Tensor:
    """``f'(x) = (s + t·s(1−s)) / K`` by plain differentiable operations (module docstring)."""
    t = beta * x
    s = torch.sigmoid(t)
    return (s + t * (s * (1 - s))) / SWISH_LIPSCHITZ_BOUND


def _derivatives(x: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """``(f'(x), ∂f/∂β)`` by plain differentiable operations."""
    s = torch.sigmoid(beta * x)
    return lipswish_derivative(x, beta), x * x * (s * (1 - s)) / SWISH_LIPSCHITZ_BOUND


def _layout_like(t: Tensor | None, like: Tensor) -> Tensor | None:
    """``t`` in the memory format of ``like`` (channels-last or not): elementwise operations on
    tensors of mixed layouts run strided and slow."""
    if t is None or t.dim() != 4 or t.shape != like.shape:
        return t
    cl = torch.channels_last
    channels_last = like.is_contiguous(memory_format=cl) and not like.is_contiguous()
    if channels_last and not t.is_contiguous(memory_format=cl):
        return t.contiguous(memory_format=cl)
    return t


def _value_and_derivative(x: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """``(f(x), f'(x))`` without a graph, in four allocations: ``t`` and ``t·s(1−s)`` (freed on
    return), ``s`` (becomes ``f'``) and the output."""
    t = beta * x
    s = torch.sigmoid(t)
    out = torch.mul(x, s).mul_(1 / SWISH_LIPSCHITZ_BOUND)
    ss = torch.rsub(s, 1).mul_(s).mul_(t)  # t·s(1−s)
    return out, s.add_(ss).mul_(1 / SWISH_LIPSCHITZ_BOUND)


def _curvature(t: Tensor, s: Tensor) -> Tensor:
    """``K·q = s(1−s)(2 + t(1−2s))`` by plain differentiable operations (``f''(x) = β·q``,
    ``∂f'/∂β = x·q``; module docstring)."""
    return s * (1 - s) * (2 + t * (1 - 2 * s))


def _beta_grad(grad: Tensor, x: Tensor, beta: Tensor) -> Tensor:
    """``Σ grad·∂f/∂β = Σ grad·x²·s(1−s)/K`` (0-d), ``s`` recomputed rather than stored (one
    hidden-sized tensor less held per activation until the model's backward)."""
    if torch.is_grad_enabled():  # differentiated again: plain out-of-place operations
        return torch.sum(grad * _derivatives(x, beta)[1])
    s = torch.sigmoid(beta * x)
    q = torch.rsub(s, 1).mul_(s).mul_(x).mul_(x)
    return torch.mul(q, grad, out=s).sum() / SWISH_LIPSCHITZ_BOUND


class _LipSwishBackward(torch.autograd.Function):
    """``(grad·f'(x), Σ grad·∂f/∂β)``, the backward of LipSwish as a function of ``(grad, x, β)``
    (``d = f'(x)`` passed in from the forward; the β term only when ``with_beta``), with the
    analytic second derivatives; its own backward is made of plain operations, so every higher
    derivative is exact too."""

    @staticmethod
    def forward(grad: Tensor, x: Tensor, beta: Tensor, d: Tensor, with_beta: bool) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        grad_beta = _beta_grad(grad, x, beta) if with_beta else beta.new_zeros(())
        return grad * d, grad_beta

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        grad, x, beta, d, _ = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(grad, x, beta, d)

    @staticmethod
    def backward(ctx, gg_x: Tensor | None, gg_beta: Tensor | None):  # type: ignore[override]
        grad, x, beta, d = ctx.saved_tensors
        gg_x, gg_beta = _layout_like(gg_x, x), _layout_like(gg_beta, x)
        k = SWISH_LIPSCHITZ_BOUND
        g_grad = g_x = g_beta = None
        if gg_x is not None:
            g_grad = gg_x * d
            if torch.is_grad_enabled():  # differentiated again: plain out-of-place operations
                t = beta * x
                g_x = grad * gg_x * _curvature(t, torch.sigmoid(t)) * (beta / k)
                g_beta = torch.sum(g_x * x) / beta
            else:  # the same values with three scratch tensors instead of a dozen
                t = beta * x
                s = torch.sigmoid(t)
                q = torch.rsub(s, 1).mul_(s)  # s(1−s)
                t.mul_(s.mul_(-2).add_(1)).add_(2)  # 2 + t(1−2s)
                g_x = q.mul_(t).mul_(grad).mul_(gg_x).mul_(beta / k)
                g_beta = torch.mul(g_x, x, out=t).sum() / beta
        if gg_beta is not None:  # Σ grad·b, b = x²·s(1−s)/K
            t = beta * x
            s = torch.sigmoid(t)
            ss = s * (1 - s)
            dss = ss * (1 - 2 * s)  # d s(1−s) / dt
            b_grad = gg_beta * (x * x * ss / k)
            b_x = grad * gg_beta * (2 * x * ss + x * t * dss) / k
            b_beta = torch.sum(grad * gg_beta * x * x * x * dss) / k
            g_grad = b_grad if g_grad is None else g_grad + b_grad
            g_x = b_x if g_x is None else g_x + b_x
            g_beta = b_beta if g_beta is None else g_beta + b_beta
        return g_grad, g_x, None if g_beta is None else g_beta.reshape(beta.shape), None, None


class _LipSwishFunction(torch.autograd.Function):
    """``x·σ(βx)/K`` storing ``d = f'(x)`` for its backward (a non-differentiable output, never
    materialised as a zero gradient)."""

    @staticmethod
    def forward(x: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return _value_and_derivative(x, beta)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, beta = inputs
        _, d = output
        ctx.mark_non_differentiable(d)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, beta, d)
        ctx.beta_node = gradient_node(beta)

    @staticmethod
    def backward(ctx, grad: Tensor | None, _grad_d: Tensor | None = None):  # type: ignore[override]
        if grad is None:
            return None, None
        x, beta, d = ctx.saved_tensors
        with_beta = will_execute(ctx.beta_node)
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            if is_batched(grad):  # vmap cannot nest autograd Functions here: plain operations
                d_ref, b_ref = _derivatives(x, beta)
                return grad * d_ref, torch.sum(grad * b_ref).reshape(beta.shape)
            grad_x, grad_beta = _LipSwishBackward.apply(grad, x, beta, d, with_beta)
            return grad_x, grad_beta.reshape(beta.shape) if with_beta else None
        grad_beta = _beta_grad(grad, x, beta).reshape(beta.shape) if with_beta else None
        return grad * d, grad_beta


class _LipSwishWithDerivative(torch.autograd.Function):
    """``(f(x), f'(x))``, both differentiable, for Jacobians carried forward
    (:mod:`invflow.residual.forward_jacobian`): one autograd node instead of a dozen.

    Backward, with ``q = s(1−s)(2 + t(1−2s))/K`` (module docstring):
    ``∂/∂x = g_f·f'(x) + g_d·β·q`` and ``∂/∂β = Σ g_f·x²·s(1−s)/K + Σ g_d·x·q``, written in plain
    operations on the saved inputs, so differentiating it again is exact too.
    """

    @staticmethod
    def forward(x: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return _value_and_derivative(x, beta)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, beta = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, beta)

    @staticmethod
    def backward(ctx, g_out: Tensor | None, g_d: Tensor | None):  # type: ignore[override]
        x, beta = ctx.saved_tensors
        k = SWISH_LIPSCHITZ_BOUND
        t = beta * x
        s = torch.sigmoid(t)
        ss = s * (1 - s)
        grad_x = grad_beta = None
        if g_out is not None:
            grad_x = g_out * ((s + t * ss) / k)
            grad_beta = torch.sum(g_out * x * x * ss) / k
        if g_d is not None:
            gq = g_d * (_curvature(t, s) / k)
            grad_x = gq * beta if grad_x is None else grad_x + gq * beta
            grad_beta = torch.sum(gq * x) if grad_beta is None else grad_beta + torch.sum(gq * x)
        return grad_x, None if grad_beta is None else grad_beta.reshape(beta.shape)


def lipswish_with_derivative(x: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """``(x·σ(βx)/1.1, f'(x))`` fused; values and first and second derivatives equal to
    :func:`lipswish_reference` and its autograd derivative."""
    return _LipSwishWithDerivative.apply(x, beta)  # no graph is recorded where none is needed


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

    def forward_with_jacobian(self, x: Tensor, t: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(f(x), t·diag(f'(x)))``: each column of the carried Jacobian scaled by ``f'`` (see
        :mod:`invflow.residual.forward_jacobian`)."""
        out, derivative = lipswish_with_derivative(x, self.beta)
        return out, torch.diag_embed(derivative) if t is None else t * derivative.unsqueeze(-2)
