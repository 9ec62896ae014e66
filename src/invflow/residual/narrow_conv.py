"""Stride-1 "same" convolutions with few channels on one side, as batched matrix products on the CPU.

The first and last convolutions of a residual net at the finest scale map 1 (MNIST) or 3 channels
to the hidden width and back, at full resolution. oneDNN runs these shapes slowly on the CPU, worst
for the products the log-det series needs most (on a 64 × 1 × 28 × 28 batch with 64 hidden
channels: 5–7 ms for each input-gradient of the 1 → 64 convolution, against about 1.5 ms as
below; ``benchmarks/narrow_conv.py``). With ``U`` = im2col (``F.unfold``, ``k × k`` patches,
padding ``k // 2``) and ``W`` viewed as ``(C_out, C_in·k²)``:

- few input channels: ``conv(x, W) = W · U(x)``, one product per image into ``(C_out, H·W)``;
- few output channels: ``conv(h, W) = fold(W̃ · h)``, the product with all ``k²`` taps at once
  (``W̃ = flip(W)`` as ``(C_out·k², C_in)``) summed back onto the grid by col2im (``Uᵀ``),
  which scatters where a convolution gathers, hence the flip (as Glow's conditioner,
  ``invflow.layers.conv_conditioner``).

The input gradient ``Wᵀ ⋆ g`` is the convolution of ``g`` with ``flip(W)`` transposed, whose narrow
side is the other one; the weight gradient ``g ⋆ x`` is ``Σ_b g_b · U(x_b)ᵀ`` (few input channels) or
``flip(Σ_b U(g_b) · x_bᵀ)`` (few output channels). Every form is made of differentiable operators
(``unfold``/``fold`` are each other's adjoint), so derivatives of any order stay exact; the tests
compare values and derivatives with ``F.conv2d`` in float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: The widest output and input sides that take the product forms. Measured per operator
#: (``benchmarks/narrow_conv.py``, 64 hidden channels, batch 64, one thread): with 1 to 4 output
#: channels the fold form runs 1.2–4.8x faster than oneDNN (forward, the input gradient of the
#: transposed convolution, the weight gradient); the im2col form is faster only from 1 input
#: channel (3 or 4: 0.4–0.6x), and both are slower at 16 channels (0.3–0.4x).
NARROW_OUT_CHANNELS = 4
NARROW_IN_CHANNELS = 1


def is_channels_last(t: Tensor) -> bool:
    """Whether ``t`` (4-D) is laid out channels-last and not also plain (so ``C > 1``)."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def narrow_side(x: Tensor, weight: Tensor, padding: int) -> str | None:
    """``"in"`` or ``"out"``: which side of ``conv2d(x, weight, padding=padding)`` is narrow enough
    for the product forms, or ``None`` where the built-in kernel runs (other devices, 1 × 1 and
    non-"same" kernels, inputs in neither dense layout, wide convolutions, and inside
    ``torch.compile``, where :func:`compiled_conv2d` is the entry). ``torch.export`` traces the
    product forms as plain operators, so an exported model computes exactly what the eager one does."""
    if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
        return None
    return _side(x, weight, padding)


def _side(x: Tensor, weight: Tensor, padding: int) -> str | None:
    k = weight.shape[-1]
    if (x.device.type != "cpu" or x.dim() != 4 or k < 3 or weight.shape[-2] != k or padding != k // 2
            or not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))):
        return None
    out_channels, in_channels = weight.shape[:2]
    if out_channels <= NARROW_OUT_CHANNELS:
        return "out"
    if in_channels <= NARROW_IN_CHANNELS:
        return "in"
    return None


def _shifted_copies(x: Tensor, k: int) -> Tensor:
    """``U(x)`` as ``k²`` shifted copies of the zero-padded input: ``(B, C·k², H·W)``."""
    batch, channels, height, width = x.shape
    padded = F.pad(x, (k // 2,) * 4)
    shifted = [padded[:, :, i:i + height, j:j + width] for i in range(k) for j in range(k)]
    return torch.stack(shifted, dim=2).reshape(batch, channels * k * k, height * width)


def _shifted_sum(columns: Tensor, k: int, height: int, width: int) -> Tensor:
    """``Uᵀ(columns)``: each tap's plane added back at its shift, then the padding cropped."""
    batch = columns.shape[0]
    channels = columns.shape[1] // (k * k)
    taps = columns.reshape(batch, channels, k, k, height, width)
    padded = columns.new_zeros(batch, channels, height + k - 1, width + k - 1)
    for i in range(k):
        for j in range(k):
            padded[:, :, i:i + height, j:j + width] += taps[:, :, i, j]
    return padded[:, :, k // 2:k // 2 + height, k // 2:k // 2 + width].contiguous()


class _Im2col(torch.autograd.Function):
    """``U(x)``; its derivative is :class:`_Col2im` and the reverse, so every order is exact."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, k: int) -> Tensor:  # type: ignore[override]
        return _shifted_copies(x, k)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, ctx.k = inputs
        ctx.size = x.shape[-2:]

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return _Col2im.apply(grad, ctx.k, *ctx.size), None


class _Col2im(torch.autograd.Function):
    """``Uᵀ(columns)`` (col2im, ``F.fold`` with padding ``k // 2``); its derivative is :class:`_Im2col`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(columns: Tensor, k: int, height: int, width: int) -> Tensor:  # type: ignore[override]
        return _shifted_sum(columns, k, height, width)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.k = inputs[1]

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return _Im2col.apply(grad, ctx.k), None, None, None


def _columns(x: Tensor, k: int, plain: bool = False) -> Tensor:
    """``U(x)``: ``(B, C·k², H·W)``, channel-major like a weight's ``(C_in, k, k)``; for the few
    channels here, shifted copies run several times faster than ``F.unfold``'s per-image loop.
    ``plain``: without the autograd Function (inside an operator that has its own derivative)."""
    return _shifted_copies(x, k) if plain else _Im2col.apply(x, k)


def _fold(columns: Tensor, k: int, height: int, width: int, plain: bool = False) -> Tensor:
    """``Uᵀ(columns)`` as ``(B, C, H, W)`` (``F.fold``; shifted sums, likewise faster here)."""
    return _shifted_sum(columns, k, height, width) if plain else _Col2im.apply(columns, k, height, width)


def _flat(t: Tensor) -> Tensor:
    """``t`` as ``(B, C, H·W)``: a view in either layout (channels-last gives a transposed matrix
    per image, which the batched product reads as such)."""
    return t.reshape(t.shape[0], t.shape[1], -1)


def _narrow_in(x: Tensor, weight: Tensor, bias: Tensor | None, channels_last: bool,
               plain: bool = False) -> Tensor:
    batch, _, height, width = x.shape
    out_channels = weight.shape[0]
    w2d = weight.reshape(out_channels, -1)
    columns = _columns(x, weight.shape[-1], plain)
    if channels_last:  # rows (B, H·W, C_out): the output's channels-last storage
        rows, w2d = columns.transpose(1, 2), w2d.T.expand(batch, -1, -1)
        y = (torch.bmm(rows, w2d) if bias is None
             else torch.baddbmm(bias.view(1, 1, -1).expand(batch, rows.shape[1], -1), rows, w2d))
        return y.transpose(1, 2).view(batch, out_channels, height, width)
    w2d = w2d.expand(batch, -1, -1)
    y = (torch.bmm(w2d, columns) if bias is None
         else torch.baddbmm(bias.view(1, -1, 1).expand(batch, -1, columns.shape[2]), w2d, columns))
    return y.view(batch, out_channels, height, width)


def _taps(weight: Tensor) -> Tensor:
    """``W̃``: ``flip(W)`` as ``(C_out·k², C_in)``, rows ordered ``(o, i, j)`` as ``fold`` reads them."""
    return weight.flip(-2, -1).permute(0, 2, 3, 1).reshape(-1, weight.shape[1])


def _narrow_out(h: Tensor, weight: Tensor, bias: Tensor | None, channels_last: bool,
                plain: bool = False) -> Tensor:
    batch, _, height, width = h.shape
    k = weight.shape[-1]
    partial = torch.bmm(_taps(weight).expand(batch, -1, -1), _flat(h))
    y = _fold(partial, k, height, width, plain)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y.contiguous(memory_format=torch.channels_last) if channels_last else y


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, padding: int,
           channels_last: bool = False) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1), by a product form where one side is
    narrow (:func:`narrow_side`); ``channels_last`` lays the result out channels-last (a narrow
    input does not tell its layout; a narrow result is copied, which is cheap)."""
    side = narrow_side(x, weight, padding)
    plain = torch.compiler.is_exporting()
    if side == "in":
        return _narrow_in(x, weight, bias, channels_last, plain)
    if side == "out":
        return _narrow_out(x, weight, bias, channels_last, plain)
    return F.conv2d(x, weight, bias, padding=padding)


def transposed_weight(weight: Tensor) -> Tensor:
    """The kernel of ``y ↦ Wᵀ ⋆ y`` (the adjoint of a stride-1 "same" convolution) as a convolution."""
    return weight.transpose(0, 1).flip(-2, -1)


def input_gradient(grad: Tensor, weight: Tensor, padding: int, channels_last: bool = False) -> Tensor | None:
    """``Wᵀ ⋆ grad`` by a product form (channels-last if ``channels_last``), or ``None``
    where no side is narrow."""
    adjoint = transposed_weight(weight)
    if narrow_side(grad, adjoint, padding) is None:
        return None
    return conv2d(grad, adjoint, None, padding, channels_last)


def weight_gradient(grad: Tensor, x: Tensor, weight: Tensor, padding: int) -> Tensor | None:
    """``grad ⋆ x`` (the gradient of ``conv2d(x, W)`` in ``W`` for ``grad``) by a product form, or
    ``None`` where no side is narrow."""
    side = narrow_side(x, weight, padding)
    if side is None or not (grad.is_contiguous() or grad.is_contiguous(memory_format=torch.channels_last)):
        return None
    return _weight_product(side, grad, x, weight.shape)


def _weight_product(side: str, grad: Tensor, x: Tensor, shape: torch.Size, plain: bool = False) -> Tensor:
    out_channels, in_channels, k = shape[0], shape[1], shape[-1]
    if side == "in":
        per_image = torch.bmm(_flat(grad), _columns(x, k, plain).transpose(1, 2))
        return per_image.sum(0).view(shape)
    per_image = torch.bmm(_columns(grad, k, plain), _flat(x).transpose(1, 2))
    return per_image.sum(0).view(out_channels, k, k, in_channels).permute(0, 3, 1, 2).flip(-2, -1)


# ------------------------------------------------------------------------------- torch.compile
# Traced by inductor, the product forms ran a compiled residual step 5x slower than its oneDNN
# convolutions; as custom operators they run as above inside the compiled code. Each operator's
# derivative is made of the two operators, so compiled first-order autograd (the series'
# ``chain_live_vjp``) and higher orders in eager mode both work.

def _layout(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _as_declared(y: Tensor, channels_last: bool) -> Tensor:
    """``y`` with exactly the strides the fake kernel declares (they differ only on size-1 dims)."""
    want = torch.empty(y.shape, device="meta", memory_format=_layout(channels_last)).stride()
    if y.stride() == want:
        return y
    if y.is_contiguous(memory_format=_layout(channels_last)):
        return y.as_strided(y.shape, want)
    return y.contiguous(memory_format=_layout(channels_last))


@torch.library.custom_op("invflow::narrow_conv2d", mutates_args=())
def _conv_op(x: Tensor, weight: Tensor, padding: int, channels_last: bool) -> Tensor:
    side = _side(x, weight, padding)
    if side == "in":
        y = _narrow_in(x, weight, None, channels_last, plain=True)
    elif side == "out":
        y = _narrow_out(x, weight, None, channels_last, plain=True)
    else:
        y = F.conv2d(x, weight, padding=padding)
    return _as_declared(y, channels_last)


@_conv_op.register_fake
def _(x: Tensor, weight: Tensor, padding: int, channels_last: bool) -> Tensor:
    shape = (x.shape[0], weight.shape[0], *x.shape[2:])
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=_layout(channels_last))


@torch.library.custom_op("invflow::narrow_conv2d_weight", mutates_args=())
def _weight_op(grad: Tensor, x: Tensor, weight: Tensor, padding: int) -> Tensor:
    side = _side(x, weight, padding)
    if side is None or not (grad.is_contiguous() or grad.is_contiguous(memory_format=torch.channels_last)):
        return torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [padding, padding], [1, 1],
                                                   False, [0, 0], 1, [False, True, False])[1].contiguous()
    return _weight_product(side, grad, x, weight.shape, plain=True).contiguous()


@_weight_op.register_fake
def _(grad: Tensor, x: Tensor, weight: Tensor, padding: int) -> Tensor:
    return torch.empty(weight.shape, dtype=x.dtype, device=x.device)


def _save_conv(ctx, inputs, output) -> None:
    x, weight, ctx.padding, _ = inputs
    ctx.save_for_backward(x, weight)


def _save_weight(ctx, inputs, output) -> None:
    grad, x, weight, ctx.padding = inputs
    ctx.save_for_backward(grad, x, weight)


def _conv_op_backward(ctx, grad: Tensor):
    x, weight = ctx.saved_tensors
    gx = gw = None
    if ctx.needs_input_grad[0]:
        gx = _conv_op(grad, transposed_weight(weight), ctx.padding, is_channels_last(x))
    if ctx.needs_input_grad[1]:
        gw = _weight_op(grad, x, weight, ctx.padding)
    return gx, gw, None, None


def _weight_op_backward(ctx, gg_w: Tensor):
    grad, x, _ = ctx.saved_tensors
    g_grad = g_x = None
    if ctx.needs_input_grad[0]:
        g_grad = _conv_op(x, gg_w, ctx.padding, is_channels_last(grad))
    if ctx.needs_input_grad[1]:
        g_x = _conv_op(grad, transposed_weight(gg_w), ctx.padding, is_channels_last(x))
    return g_grad, g_x, None, None


_conv_op.register_autograd(_conv_op_backward, setup_context=_save_conv)
_weight_op.register_autograd(_weight_op_backward, setup_context=_save_weight)


def compiled_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, padding: int,
                    channels_last: bool) -> Tensor:
    """:func:`conv2d` for code under ``torch.compile``: a narrow convolution as one custom operator."""
    if _side(x, weight, padding) is None:
        return F.conv2d(x, weight, bias, padding=padding)
    y = _conv_op(x, weight, padding, channels_last)
    return y if bias is None else y + bias.view(1, -1, 1, 1)
