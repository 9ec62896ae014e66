"""A stride-1 2D convolution whose double backward uses the convolution kernels themselves.

The Neumann gradient of a residual block differentiates one vector–Jacobian product of the
residual net again (Chen et al. 2019, appendix C). For a convolution ``y = W ⋆ x + b`` the
product is ``gx = Wᵀ ⋆ gy`` (a transposed convolution) and ``gW = gy ⋆ x``; their derivatives
are again convolutions:

- ``∂/∂gy``: ``W ⋆ ggx + ggW ⋆ x + ggb``;
- ``∂/∂x``: ``ggWᵀ ⋆ gy`` (the input gradient of a convolution with weight ``ggW``);
- ``∂/∂W``: ``gy ⋆ ggx`` (the weight gradient of a convolution with input ``ggx``).

PyTorch's built-in double backward computes the last one as a convolution of the transposed
batch with the transposed gradient (a kernel as large as the image), which on a CPU is several
times slower than the weight-gradient kernel and copies both operands; :class:`_Conv2dBackward`
calls the weight-gradient kernel (``aten.convolution_backward``) instead. Its own backward is
made of differentiable operations, so higher derivatives stay exact (``gradgradcheck`` in the
tests compares against ``torch.nn.functional.conv2d``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from invflow.residual import narrow_conv
from invflow.residual.autograd_pass import gradient_node, is_batched, will_execute

_STRIDE, _DILATION, _OUTPUT_PADDING = [1, 1], [1, 1], [0, 0]


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, padding: list[int], channels_last: bool) -> Tensor:
    """``F.conv2d``, by :mod:`invflow.residual.narrow_conv`'s products where one side is narrow (then
    laid out channels-last if ``channels_last``)."""
    if padding[0] == padding[1]:
        return narrow_conv.conv2d(x, weight, bias, padding[0], channels_last)
    return F.conv2d(x, weight, bias, padding=padding)


def _conv_backward(grad: Tensor, x: Tensor, weight: Tensor, padding: list[int], mask: list[bool],
                   bias: bool, products: bool = True) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(gx, gW, gb)`` of ``conv2d(x, weight, padding)`` for ``grad``; only the entries in ``mask``.

    With ``products`` the narrow convolutions' gradients are :mod:`invflow.residual.narrow_conv`'s
    products; the rest come from ``aten.convolution_backward``."""
    gx = gw = gb = None
    if products and padding[0] == padding[1]:
        if mask[0]:
            gx = narrow_conv.input_gradient(grad, weight, padding[0], narrow_conv.is_channels_last(x))
        if mask[1]:
            gw = narrow_conv.weight_gradient(grad, x, weight, padding[0])
        if gx is not None or gw is not None:
            gb = grad.sum((0, 2, 3)) if mask[2] and bias else None
    rest = [mask[0] and gx is None, mask[1] and gw is None, mask[2] and bias and gb is None]
    if any(rest):
        ax, aw, ab = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[0]] if bias else None, _STRIDE, padding, _DILATION, False,
            _OUTPUT_PADDING, 1, rest)
        gx = gx if gx is not None else ax
        gw = gw if gw is not None else aw
        gb = gb if gb is not None else ab
    return gx, gw, gb


class _Conv2dBackward(torch.autograd.Function):
    """``(gx, gW, gb)`` as a function of ``(gy, x, W)``, with convolution-kernel derivatives."""

    @staticmethod
    def forward(grad: Tensor, x: Tensor, weight: Tensor, padding: list[int], mask: list[bool], bias: bool):  # type: ignore[override]
        gx, gw, gb = _conv_backward(grad, x, weight, padding, mask, bias)
        return gx, gw, gb

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        grad, x, weight, padding, _, _ = inputs
        ctx.set_materialize_grads(False)
        ctx.padding = padding
        ctx.save_for_backward(grad, x, weight)

    @staticmethod
    def backward(ctx, gg_x: Tensor | None, gg_w: Tensor | None, gg_b: Tensor | None):  # type: ignore[override]
        grad, x, weight = ctx.saved_tensors
        need_grad, need_x, need_w = ctx.needs_input_grad[:3]
        g_grad = g_x = g_w = None
        if gg_x is not None:
            if need_grad:
                g_grad = _conv(gg_x, weight, None, ctx.padding, narrow_conv.is_channels_last(grad))
            if need_w:
                g_w = _conv_backward(grad, gg_x, weight, ctx.padding, [False, True, False], False)[1]
        if gg_w is not None:
            if need_grad:
                term = _conv(x, gg_w, None, ctx.padding, narrow_conv.is_channels_last(grad))
                g_grad = term if g_grad is None else g_grad + term
            if need_x:
                g_x = _conv_backward(grad, x, gg_w, ctx.padding, [True, False, False], False)[0]
        if gg_b is not None and need_grad:
            term = gg_b.reshape(1, -1, 1, 1).expand_as(grad)
            g_grad = term if g_grad is None else g_grad + term
        return g_grad, g_x, g_w, None, None, None


class _Conv2dFunction(torch.autograd.Function):
    """``conv2d(x, W, b)`` (stride 1, dilation 1, one group) with :class:`_Conv2dBackward`."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, padding: list[int],  # type: ignore[override]
                channels_last: bool) -> Tensor:
        return _conv(x, weight, bias, padding, channels_last)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, weight, bias, padding, _ = inputs
        ctx.padding = padding
        ctx.has_bias = bias is not None
        ctx.nodes = [gradient_node(t) for t in (x, weight, bias)]
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        mask = [will_execute(node) for node in ctx.nodes]  # the series' products: x only
        if torch.is_grad_enabled() and not is_batched(grad):  # create_graph: differentiable
            gx, gw, gb = _Conv2dBackward.apply(grad, x, weight, ctx.padding, mask, ctx.has_bias)
        else:  # a plain pass, or a vmapped one (is_grads_batched), where autograd's own formula applies
            gx, gw, gb = _conv_backward(grad, x, weight, ctx.padding, mask, ctx.has_bias,
                                        products=not is_batched(grad))
        return gx, gw, gb, None, None


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, padding: int,
           channels_last: bool = False) -> Tensor:
    """Stride-1 ``conv2d`` whose derivatives of any order use convolution kernels (see module);
    ``channels_last``: where a narrow side takes the product forms, the result is laid out
    channels-last (the layout ``F.conv2d`` gives a channels-last input)."""
    if not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad
                                           or (bias is not None and bias.requires_grad)):
        return narrow_conv.conv2d(x, weight, bias, padding, channels_last)
    return _Conv2dFunction.apply(x, weight, bias, [padding, padding], channels_last)
