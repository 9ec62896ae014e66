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
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invflow.core.context import ContextBias


class ZeroConv2d(nn.Conv2d):
    """A 3x3 convolution initialised to zero, so a coupling starts as the identity (Glow)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


def conv3x3_as_gemm_in(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv(x)`` for a 3x3, padding-1 ``conv``, as rows ``(B·H·W, C_out)``: im2col, then a GEMM."""
    columns = F.unfold(x, 3, padding=1).transpose(1, 2)  # (B, H·W, C_in·9), channel-major like the weight
    return torch.addmm(
        conv.bias, columns.reshape(-1, columns.shape[2]), conv.weight.reshape(conv.out_channels, -1).T
    )


def conv3x3_as_gemm_out(rows: Tensor, conv: nn.Conv2d, height: int, width: int) -> Tensor:
    """``conv(h)`` for a 3x3, padding-1 ``conv`` and ``h`` given as rows ``(B·H·W, C_in)``, as
    ``(B, C_out, H, W)``: one GEMM into the nine taps' partial outputs, summed by col2im."""
    taps = conv.weight.flip(2, 3).permute(0, 2, 3, 1).reshape(-1, conv.in_channels)  # (C_out·9, C_in)
    partial = (rows @ taps.T).view(-1, height * width, taps.shape[0]).transpose(1, 2)  # (B, C_out·9, H·W)
    return F.fold(partial, (height, width), 3, padding=1) + conv.bias.view(1, -1, 1, 1)


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
        h = conv3x3_as_gemm_in(x, first)  # rows (B·H·W, hidden)
        if context is not None:
            rows = h.view(x.shape[0], -1, h.shape[1]) + self.context_bias.linear(context)[:, None, :]
            h = rows.view(-1, h.shape[1])
        h = F.relu(h, inplace=True)
        h = F.relu(
            torch.addmm(middle.bias, h, middle.weight.reshape(middle.out_channels, -1).T), inplace=True
        )
        return conv3x3_as_gemm_out(h, last, x.shape[2], x.shape[3])
