"""Glow's convolutional coupling conditioner (Kingma & Dhariwal 2018, sec. 3.3): 3x3 conv → ReLU →
1x1 conv → ReLU → zero-initialised 3x3 conv, evaluated on the CPU as three matrix products.

The same function of the same parameters as the ``nn.Sequential`` of convolutions, rearranged so
that every FLOP is a dense GEMM on rows ``(B·H·W, channels)``:

- the first 3x3 convolution (few input channels) is im2col (``F.unfold``) followed by a product
  with the weight viewed as ``(hidden, C_in·9)``;
- the 1x1 convolution is a product with the weight viewed as ``(hidden, hidden)``;
- the last 3x3 convolution (few output channels) multiplies by all nine taps at once, giving
  ``(B·H·W, C_out·9)`` per-tap partial outputs, and sums each tap's shifted copy with col2im
  (``F.fold``). ``fold`` scatters a column into position ``p + k``, a convolution gathers from
  ``p + k``, so the taps are flipped: ``conv(h, W) = fold(h · flip(W))``.

On the CPU the oneDNN convolutions of these shapes (2 to 8 channels on one side, 128 on the other)
are slow, worst in their backward: the GEMM form made a whole MNIST Glow training step 1.37x
faster (README "vs_reference"). Elsewhere (CUDA, cuDNN) the ordinary convolutions run.
The parameters stay ``nn.Conv2d`` modules at the ``nn.Sequential``
indices 0, 2, 4, so state dicts are unchanged.

For float32 training on the CPU the whole conditioner is one autograd Function
(:class:`_GemmConditioner`) with its backward written out: the two hidden layers are oneDNN
matrix products with the bias and ReLU fused into them (``mkldnn._linear_pointwise``, the kernel
inductor uses for the same pattern), so neither the bias copy before the product nor the ReLU pass
after it touches the ``(B·H·W, hidden)`` activations, and the backward masks the ReLU gradients in
place instead of allocating new ones. A second derivative (``create_graph=True``) differentiates
the plain operators instead, so it stays exact. Where they build, the Function's forward and
backward run as native CPU kernels (``conv_conditioner_kernels``: the same products, the glue in
single passes, no Python between the operators); the Python implementation below is the
reference they are tested against and the fallback.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invflow.core.context import ContextBias
from invflow.layers.conv_conditioner_kernels import kernels as native_kernels


class ZeroConv2d(nn.Conv2d):
    """A 3x3 convolution initialised to zero, so a coupling starts as the identity (Glow)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


_LINEAR_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def fused_linear_relu_available() -> bool:
    """Whether this torch has oneDNN's matrix product with fused bias and ReLU."""
    return _LINEAR_POINTWISE is not None and torch.backends.mkldnn.is_available()


def _linear_relu(rows: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``relu(rows · Wᵀ + b)`` with ``W`` as ``(out, in)``: one fused oneDNN product in float32, else
    ``addmm`` and an in-place ReLU (not differentiable: inside :class:`_GemmConditioner` or no-grad)."""
    if not torch.compiler.is_compiling() and rows.dtype == torch.float32 and fused_linear_relu_available():
        return _LINEAR_POINTWISE(rows, weight, bias, "relu", [], "")
    return torch.addmm(bias, rows, weight.T).relu_()


def conv3x3_as_gemm_in(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``conv2d(x, weight, bias, padding=1)`` for a 3x3 ``weight``, as rows ``(B·H·W, C_out)``:
    im2col, then a GEMM."""
    columns = F.unfold(x, 3, padding=1).transpose(1, 2)  # (B, H·W, C_in·9), channel-major like the weight
    return torch.addmm(bias, columns.reshape(-1, columns.shape[2]), weight.reshape(weight.shape[0], -1).T)


def _taps(weight: Tensor) -> Tensor:
    """A 3x3 weight's flipped taps ``(C_out·9, C_in)``, rows ordered as ``fold`` reads them."""
    return weight.flip(2, 3).permute(0, 2, 3, 1).reshape(-1, weight.shape[1])


def conv3x3_as_gemm_out(rows: Tensor, weight: Tensor, bias: Tensor, height: int, width: int) -> Tensor:
    """``conv2d(h, weight, bias, padding=1)`` for a 3x3 ``weight`` and ``h`` given as rows
    ``(B·H·W, C_in)``, as ``(B, C_out, H, W)``: one GEMM into the nine taps' partial outputs,
    summed by col2im."""
    taps = _taps(weight)  # (C_out·9, C_in)
    partial = (rows @ taps.T).view(-1, height * width, taps.shape[0]).transpose(1, 2)  # (B, C_out·9, H·W)
    return F.fold(partial, (height, width), 3, padding=1) + bias.view(1, -1, 1, 1)


def _rows(x: Tensor) -> Tensor:
    """im2col of a 3x3, padding-1 convolution as rows ``(H·W·B, 9·C)``: position-major (row
    ``(y·W + x)·B + b``, so the batch varies fastest, which lets :func:`_col2im` add long contiguous
    runs) and tap-major (column ``(3i + j)·C + c`` holds channel ``c`` at offset ``(i − 1, j − 1)``).
    In the zero-padded channels-last input the entries ``(j, c)`` of one kernel row ``i`` lie next to
    each other, so each kernel row is one strided window copy: three copies (1.2–2.6x faster here
    than nine shifted copies stacked channel-major)."""
    batch, channels, height, width = x.shape
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1)).contiguous()  # (B, H+2, W+2, C)
    batch_stride, row_stride, column_stride, _ = padded.stride()
    rows = x.new_empty(height, width, batch, 3, 3 * channels)
    for i, kernel_row in enumerate(rows.unbind(3)):
        kernel_row.copy_(padded.as_strided((height, width, batch, 3 * channels),
                                           (row_stride, column_stride, batch_stride, 1),
                                           padded.storage_offset() + i * row_stride))
    return rows.view(-1, 9 * channels)


def _tap_major(weight: Tensor) -> Tensor:
    """A 3x3 weight ``(C_out, C_in, 3, 3)`` as ``(C_out, 9·C_in)`` in :func:`_rows`' column order."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def _from_tap_major(rows: Tensor, shape: torch.Size) -> Tensor:
    """The inverse of :func:`_tap_major`: ``(C_out, 9·C_in)`` back to ``shape = (C_out, C_in, 3, 3)``."""
    return rows.view(shape[0], 3, 3, shape[1]).permute(0, 3, 1, 2)


def _col2im(planes: Tensor, batch: int, height: int, width: int) -> Tensor:
    """col2im of tap planes ``(9·C, H·W·B)`` (tap-major rows ``(3i + j)·C + c``, columns in
    :func:`_rows`' position-major order) as ``(B, C, H, W)``: plane ``(i, j)`` is added at offset
    ``(i, j)`` of a zero-padded ``(C, H+2, W+2, B)`` grid, so output position ``p`` receives the
    column of position ``p − (i − 1, j − 1)``. With the batch innermost each add runs over
    ``W·B`` contiguous numbers per row (4x faster here than per-tap columns interleaved by channel,
    whose adds read every 9th number)."""
    channels = planes.shape[0] // 9
    grid = planes.new_zeros(channels, height + 2, width + 2, batch)
    strides, offset = grid.stride(), grid.storage_offset()
    window = (channels, height, width, batch)
    for k, plane in enumerate(planes.view(9, *window).unbind(0)):
        grid.as_strided(window, strides, offset + (k // 3) * strides[1] + (k % 3) * strides[2]).add_(plane)
    inner = grid.as_strided(window, strides, offset + strides[1] + strides[2])
    return inner.permute(3, 0, 1, 2).contiguous()


def _flipped_taps(weight: Tensor) -> Tensor:
    """A 3x3 weight ``(C_out, C_in, 3, 3)`` as ``(9·C_out, C_in)``, row ``(3i + j)·C_out + o`` holding
    ``weight[o, :, 2 − i, 2 − j]``: the convolution as col2im of these taps' products (a
    convolution gathers from ``p + k``, col2im scatters to ``p + k``), and the gradient of its input
    as the product of :func:`_rows` of the output gradient with them. (:func:`_taps` is the same
    flip in ``F.fold``'s channel-major row order, for the differentiable path's batch-major rows.)"""
    return weight.flip(2, 3).permute(2, 3, 0, 1).reshape(-1, weight.shape[1])


def _plain_conditioner(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, w3: Tensor,
                       b3: Tensor) -> Tensor:
    """The GEMM form by differentiable operators (the second derivative of :class:`_GemmConditioner`)."""
    h = F.relu(conv3x3_as_gemm_in(x, w1, b1))
    h = F.relu(torch.addmm(b2, h, w2.reshape(w2.shape[0], -1).T))
    return conv3x3_as_gemm_out(h, w3, b3, x.shape[2], x.shape[3])


def _functorch_active() -> bool:
    """Whether a ``torch.func`` transform (``vmap``, ``jacrev``, ...) is running: those take the
    differentiable operators (oneDNN's fused product has no batching rule)."""
    check = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(check()) if check is not None else False


def _column_sums(rows: Tensor, ones: Tensor) -> Tensor:
    """``rows.sum(0)`` as a matrix–vector product with ``ones`` (``rows.shape[0]`` ones; half the time
    of the reduction here)."""
    return torch.mv(rows.T, ones)


def _weight_gradient(a: Tensor, b: Tensor) -> Tensor:
    """``aᵀ · b`` for contiguous rows ``a (N, m)``, ``b (N, n)`` with a long ``N`` (a weight gradient):
    with ``T > 1`` threads, as a batched product over ``T`` blocks of rows, summed. ``bmm`` runs its
    batch in parallel, while one GEMM with a long reduction and a small output splits it poorly
    (1.10–1.17x faster at 2 threads here; at 1 thread, one GEMM)."""
    blocks = torch.get_num_threads()
    if blocks < 2 or a.shape[0] % blocks or a.shape[0] < 1024 * blocks:
        return a.T @ b
    return torch.bmm(a.view(blocks, -1, a.shape[1]).transpose(1, 2), b.view(blocks, -1, b.shape[1])).sum(0)


class _GemmConditioner(torch.autograd.Function):
    """The GEMM-form conditioner with fused bias + ReLU products and a written-out backward (module
    docstring). Inputs: ``x`` and the three convolutions' weights and biases."""

    @staticmethod
    def forward(ctx, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, w3: Tensor,  # type: ignore[override]
                b3: Tensor) -> Tensor:
        native = native_kernels()
        if native is not None:
            out, rows, h1, h2, first, last = native.forward(x, w1, b1, w2, b2, w3, b3)
        else:
            rows, first, last = _rows(x), _tap_major(w1), _flipped_taps(w3)
            h1 = _linear_relu(rows, first, b1)
            h2 = _linear_relu(h1, w2.reshape(w2.shape[0], -1), b2)
            out = _col2im(last @ h2.T, x.shape[0], x.shape[2], x.shape[3])
            out.add_(b3.view(1, -1, 1, 1))
        ctx.native = native
        # the reordered weights too: the backward needs them and they are small
        ctx.save_for_backward(x, w1, b1, w2, b2, w3, b3, rows, h1, h2, first, last)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, w1, b1, w2, b2, w3, b3, rows, h1, h2, first, taps = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiate the plain operators (exact, slower)
            inputs = (x, w1, b1, w2, b2, w3, b3)
            wanted = [t for t, need in zip(inputs, ctx.needs_input_grad) if need]
            found = iter(torch.autograd.grad(_plain_conditioner(*inputs), wanted, grad, create_graph=True))
            return tuple(next(found) if need else None for need in ctx.needs_input_grad)
        if ctx.native is not None:
            return tuple(ctx.native.backward(grad, x, w2, w3, rows, h1, h2, first, taps,
                                             ctx.needs_input_grad))
        need_x, need_w1, need_b1, need_w2, need_b2, need_w3, need_b3 = ctx.needs_input_grad
        per_tap = _rows(grad)  # (H·W·B, 9·C_out): the gradient each tap's partial output receives
        # taps: (9·C_out, hidden), w3's flipped taps in per_tap's column order
        ones = per_tap.new_ones(per_tap.shape[0]) if need_b1 or need_b2 else None
        g_w3 = g_b3 = g_w2 = g_b2 = g_w1 = g_b1 = g_x = None
        if need_w3:
            g_w3 = _weight_gradient(per_tap, h2).view(3, 3, *w3.shape[:2]).permute(2, 3, 0, 1).flip(2, 3)
        if need_b3:
            g_b3 = grad.sum((0, 2, 3))
        g_h = per_tap @ taps
        torch.ops.aten.threshold_backward.grad_input(g_h, h2, 0.0, grad_input=g_h)  # ReLU, in place
        if need_w2:
            g_w2 = _weight_gradient(g_h, h1).view(w2.shape)
        if need_b2:
            g_b2 = _column_sums(g_h, ones)
        g_h = g_h @ w2.reshape(w2.shape[0], -1)
        torch.ops.aten.threshold_backward.grad_input(g_h, h1, 0.0, grad_input=g_h)
        if need_w1:
            g_w1 = _from_tap_major(_weight_gradient(rows, g_h).T, w1.shape)
        if need_b1:
            g_b1 = _column_sums(g_h, ones)
        if need_x:
            # the first convolution's transpose: tap (i, j) of w1 scatters to offset (i − 1, j − 1)
            g_x = _col2im(first.T @ g_h.T, x.shape[0], x.shape[2], x.shape[3])
        return g_x, g_w1, g_b1, g_w2, g_b2, g_w3, g_b3


class ConvConditioner(nn.Sequential):
    """``Conv3x3(C_in → hidden) → ReLU → Conv1x1 → ReLU → ZeroConv3x3(hidden → C_out)`` (Glow's ``NN``).

    With ``context_features = k > 0`` a learned, zero-initialised bias of the context ``(B, k)``
    is added to the first hidden layer before its ReLU (``context_bias``, a ``ContextBias``): for
    one-hot labels a per-class bias of each hidden unit, which Adam moves at the pace of one
    parameter (concatenating the context as constant input channels instead sums 9 taps per
    class and shrinks the initial weights of ``x_a`` by the larger fan-in; on MNIST it learned
    slower than the unconditional model).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int,
                 context_features: int = 0) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, hidden_channels, 1),
            nn.ReLU(),
            ZeroConv2d(hidden_channels, out_channels),
        )
        self.context_features = context_features
        if context_features:
            self.context_bias = ContextBias(hidden_channels, context_features)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        first, middle, last = self[0], self[2], self[4]
        if x.device.type != "cpu":
            h = first(x)
            if context is not None:
                h = self.context_bias(h, context)
            return last(F.relu(middle(F.relu(h))))
        if (not torch.compiler.is_compiling()  # first: dynamo traces none of the checks below
                and context is None and x.dtype == torch.float32 and torch.is_grad_enabled()
                and fused_linear_relu_available() and not torch.is_autocast_enabled("cpu")
                and not _functorch_active()):
            return _GemmConditioner.apply(x, first.weight, first.bias, middle.weight, middle.bias,
                                          last.weight, last.bias)
        h = conv3x3_as_gemm_in(x, first.weight, first.bias)  # rows (B·H·W, hidden)
        if context is not None:
            rows = h.view(x.shape[0], -1, h.shape[1]) + self.context_bias.linear(context)[:, None, :]
            h = rows.view(-1, h.shape[1])
        h = F.relu(h, inplace=True)
        middle_weight = middle.weight.reshape(middle.out_channels, -1)
        if torch.is_grad_enabled() or torch.is_autocast_enabled("cpu"):
            h = F.relu(torch.addmm(middle.bias, h, middle_weight.T), inplace=True)
        else:  # evaluation and sampling: the fused product
            h = _linear_relu(h, middle_weight, middle.bias)
        return conv3x3_as_gemm_out(h, last.weight, last.bias, x.shape[2], x.shape[3])
