"""Brute-force checks of a flow layer, for your own layers as for invflow's (docs/architecture.md,
"Checking a layer").

``check_flow(flow, x, context)`` runs, in float64 on a copy of the layer:

- ``logdet``: the layer's ``log|det ∂z/∂x|`` against ``slogdet`` of the full autograd Jacobian of
  each sample (the context held fixed);
- ``inverse``: ``inverse(forward(x)) == x``, and ``inverse_without_logdet`` gives the same point;
- ``inverse_logdet``: the inverse's log-det is minus the forward's at the same point;
- ``batch``: each sample's output, computed alone with its own context, equals its row of the batched
  output (no sample depends on another sample or on another sample's context);
- ``gradients``: every parameter that requires a gradient receives one from ``z`` and ``logdet``;
- ``context``: with a context, changing it changes the output (the layer reads it).

Each check raises ``FlowCheckError`` naming the check and the numbers. The layer should be
deterministic (residual blocks: ``logdet="exact"``; call ``flow.eval()`` for layers whose training
mode differs). Zero-initialised layers (Glow's couplings start as the identity) pass trivially:
perturb their parameters first, as invflow's own test harness does.

>>> import torch
>>> from invflow.layers import AffineCoupling
>>> layer = AffineCoupling((4,), hidden=8)
>>> report = check_flow(layer, torch.randn(3, 4))
>>> sorted(report)
['batch', 'gradients', 'inverse', 'inverse_logdet', 'logdet']
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from invflow.core.flow import Flow, forward_of, inverse_of, inverse_without_logdet_of


class FlowCheckError(AssertionError):
    """A flow failed one of ``check_flow``'s checks; the message names the check and the numbers."""


def jacobian_logdet(fn, x: Tensor) -> Tensor:
    """Per-sample ``log|det J|`` of ``fn: (B, *shape) -> (B, …)`` by brute force: the full autograd
    Jacobian of each sample alone (``fn`` receives a batch of one and its index)."""
    out = []
    for i, xi in enumerate(x):

        def single(v: Tensor, i: int = i) -> Tensor:
            return fn(v.unsqueeze(0), i).reshape(-1)

        jac = torch.autograd.functional.jacobian(single, xi)
        jac = jac.reshape(jac.shape[0], -1)
        if jac.shape[0] != jac.shape[1]:
            raise FlowCheckError(
                f"logdet: the Jacobian is not square, {tuple(jac.shape)}: the layer changes "
                "the number of dimensions"
            )
        out.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


def _row(context: Tensor | None, i: int) -> Tensor | None:
    return None if context is None else context[i : i + 1]


def _worst(got: Tensor, expected: Tensor) -> tuple[float, int]:
    error = (got - expected).abs().reshape(got.shape[0], -1).amax(dim=1)
    worst = int(error.argmax())
    return float(error[worst]), worst


def check_logdet(flow: Flow, x: Tensor, context: Tensor | None = None, atol: float = 1e-8) -> float:
    """The layer's log-det against the brute-force Jacobian's; returns the largest error."""
    logdet = forward_of(flow, x, context)[1].detach()
    if logdet.shape != (x.shape[0],):
        raise FlowCheckError(f"logdet: expected shape ({x.shape[0]},), got {tuple(logdet.shape)}")
    expected = jacobian_logdet(lambda v, i: forward_of(flow, v, _row(context, i))[0], x)
    error, i = _worst(logdet, expected)
    if not error <= atol:
        raise FlowCheckError(
            f"logdet: sample {i}: logdet {float(logdet[i]):.6g} brute force "
            f"{float(expected[i]):.6g} (error {error:.3g} > atol {atol:g})"
        )
    return error


def check_inverse(
    flow: Flow, x: Tensor, context: Tensor | None = None, atol: float = 1e-9, logdet_atol: float = 1e-8
) -> tuple[float, float]:
    """``inverse(forward(x)) == x`` and the inverse's log-det is minus the forward's at that point;
    returns both largest errors."""
    with torch.no_grad():
        z, _ = forward_of(flow, x, context)
        x_back, inverse_logdet = inverse_of(flow, z, context)
        x_only = inverse_without_logdet_of(flow, z, context)
        _, forward_logdet = forward_of(flow, x_back, context)
    if x_back.shape != x.shape:
        raise FlowCheckError(f"inverse: returned shape {tuple(x_back.shape)}, the input was {tuple(x.shape)}")
    error, i = _worst(x_back, x)
    if not error <= atol:
        raise FlowCheckError(f"inverse: sample {i}: |inverse(forward(x)) - x| = {error:.3g} > atol {atol:g}")
    only_error, i = _worst(x_only, x_back)
    if not only_error <= atol:
        raise FlowCheckError(
            f"inverse: sample {i}: inverse_without_logdet differs from inverse by {only_error:.3g}"
        )
    ld_error, i = _worst(inverse_logdet, -forward_logdet)
    if not ld_error <= logdet_atol:
        raise FlowCheckError(
            f"inverse_logdet: sample {i}: inverse logdet {float(inverse_logdet[i]):.6g}, "
            f"minus forward logdet {float(-forward_logdet[i]):.6g} (error {ld_error:.3g})"
        )
    return error, ld_error


def check_batch_independence(
    flow: Flow, x: Tensor, context: Tensor | None = None, atol: float = 1e-10
) -> float:
    """Each sample alone (with its own context row) gives its row of the batched output."""
    with torch.no_grad():
        z, logdet = forward_of(flow, x, context)
        worst = 0.0
        for i in range(x.shape[0]):
            zi, ldi = forward_of(flow, x[i : i + 1], _row(context, i))
            error = max(float((zi[0] - z[i]).abs().max()), float((ldi[0] - logdet[i]).abs()))
            if not error <= atol:
                raise FlowCheckError(
                    f"batch: sample {i} computed alone differs from its row of the batch by "
                    f"{error:.3g}: the layer mixes samples (or their contexts)"
                )
            worst = max(worst, error)
    return worst


def check_gradients(flow: Flow, x: Tensor, context: Tensor | None = None) -> int:
    """Every parameter requiring a gradient gets one from a random projection of ``(z, logdet)``;
    returns how many parameters were checked."""
    params = [(name, p) for name, p in flow.named_parameters() if p.requires_grad]
    if not params:
        return 0
    flow.zero_grad(set_to_none=True)
    z, logdet = forward_of(flow, x, context)
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(z.shape, generator=gen, dtype=z.dtype).to(z.device)
    ((z * weights).sum() + logdet.sum()).backward()
    missing = [name for name, p in params if p.grad is None]
    if missing:
        raise FlowCheckError(
            f"gradients: {len(missing)} parameter(s) receive no gradient: {', '.join(missing)}"
        )
    nonfinite = [name for name, p in params if not bool(torch.isfinite(p.grad).all())]
    if nonfinite:
        raise FlowCheckError(f"gradients: non-finite gradient in {', '.join(nonfinite)}")
    flow.zero_grad(set_to_none=True)
    return len(params)


def check_context_used(flow: Flow, x: Tensor, context: Tensor) -> float:
    """Another context gives another output; returns the largest change."""
    other = torch.roll(context, 1, dims=0) if context.shape[0] > 1 else context + 1
    if torch.equal(other, context):
        other = context + 1
    with torch.no_grad():
        z, logdet = forward_of(flow, x, context)
        z2, logdet2 = forward_of(flow, x, other)
    change = max(float((z - z2).abs().max()), float((logdet - logdet2).abs().max()))
    if change == 0.0:
        raise FlowCheckError(
            "context: the output does not change with the context (a conditional layer "
            "that ignores it, or zero-initialised context weights not yet trained)"
        )
    return change


def check_flow(
    flow: Flow,
    x: Tensor,
    context: Tensor | None = None,
    *,
    logdet_atol: float = 1e-8,
    inverse_atol: float = 1e-9,
    batch_atol: float = 1e-10,
    gradients: bool = True,
) -> dict[str, float]:
    """Run every check above on a float64 copy of ``flow`` (the original is not touched) at ``x``
    (and ``context``, one row per sample); returns each check's largest error (for ``gradients``
    the number of parameters checked, for ``context`` the output's change) or raises
    ``FlowCheckError``."""
    if not isinstance(flow, Flow):
        raise TypeError(f"check_flow: expected an invflow Flow, got {type(flow).__name__}")
    flow = copy.deepcopy(flow).double()
    x = x.detach().double()
    if context is not None:
        context = context.detach().double() if context.is_floating_point() else context
    with torch.no_grad():
        forward_of(flow, x, context)  # data-dependent initialisation (ActNorm) before comparing passes
    report: dict[str, float] = {"logdet": check_logdet(flow, x, context, logdet_atol)}
    report["inverse"], report["inverse_logdet"] = check_inverse(flow, x, context, inverse_atol, logdet_atol)
    report["batch"] = check_batch_independence(flow, x, context, batch_atol)
    if gradients:
        report["gradients"] = float(check_gradients(flow, x, context))
    if context is not None:
        report["context"] = check_context_used(flow, x, context)
    return report


__all__ = [
    "FlowCheckError",
    "check_batch_independence",
    "check_context_used",
    "check_flow",
    "check_gradients",
    "check_inverse",
    "check_logdet",
    "jacobian_logdet",
]
