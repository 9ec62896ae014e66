"""Emerging convolutions (Hoogeboom, van den Berg & Welling 2019, "Emerging Convolutions for
Generative Normalizing Flows", sec. 3.1).

A k×k emerging convolution is the composition of two masked *autoregressive* convolutions with
complementary masks: the first sees only pixels at or before the output pixel in raster order
(and, at the centre tap, only channels ``≤`` the output channel), the second is its flip (pixels
at or after, channels ``≥``). Each Jacobian is triangular in (pixel, channel) order with the
centre-tap diagonal on its diagonal, so ``log|det| = hw·Σ_i log|diag_i|`` per convolution;
together they couple every pixel with its whole k×k neighbourhood.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invflow.core.flow import Flow, check_image, zero_logdet
from invflow.layers.choices import KernelMixing


def autoregressive_mask(channels: int, kernel_size: int) -> Tensor:
    """The ``(c, c, k, k)`` mask of the free (off-diagonal) taps of a causal convolution.

    Ones at taps strictly before the centre in raster order (rows above; the centre row left of
    the centre) and, at the centre, strictly below the diagonal (output channel > input channel).
    The centre diagonal is parametrised separately so it stays non-zero.
    """
    p = kernel_size // 2
    mask = torch.zeros(channels, channels, kernel_size, kernel_size)
    mask[:, :, :p, :] = 1.0
    mask[:, :, p, :p] = 1.0
    mask[:, :, p, p] = torch.tril(torch.ones(channels, channels), diagonal=-1)
    return mask


def causal_conv(x: Tensor, weight: Tensor) -> Tensor:
    """The autoregressive convolution ``y = weight ⋆ x`` (zero padding, same size)."""
    return F.conv2d(x, weight, padding=weight.shape[-1] // 2)


def flip_kernel(weight: Tensor) -> Tensor:
    """The complementary (anti-causal) kernel: ``conv(x, flip_kernel(w)) = flip(conv(flip(x), w))``
    where ``flip`` reverses channels, rows and columns."""
    return weight.flip(0, 1, 2, 3)


def causal_conv_inverse(y: Tensor, weight: Tensor) -> Tensor:
    """Solve ``causal_conv(x, weight) = y`` for ``x`` pixel by pixel in raster order.

    At pixel ``(i, j)`` every input the output depends on, other than the pixel itself, is
    already solved, so ``x_ij`` is a lower-triangular ``c×c`` solve against ``y_ij`` minus the
    contribution of the solved neighbours, batched over the batch. Work ``O(B·hw·c²k²)`` like
    the forward, but ``hw`` sequential steps (the dependency chain runs through every pixel).
    """
    b, c, h, w = y.shape
    k = weight.shape[-1]
    p = k // 2
    centre = weight[:, :, p, p]
    neighbours = weight.clone()
    neighbours[:, :, p, p] = 0.0
    # Unsolved pixels stay zero in the padded buffer, and their taps are masked out anyway.
    neighbours = neighbours.reshape(c, c * k * k).T
    x = y.new_zeros(b, c, h + 2 * p, w + 2 * p)
    for i in range(h):
        for j in range(w):
            # a copy of the window, so the in-place writes below leave the inverse differentiable
            known = x[:, :, i : i + k, j : j + k].reshape(b, c * k * k).clone() @ neighbours
            rhs = (y[:, :, i, j] - known).T
            x[:, :, i + p, j + p] = torch.linalg.solve_triangular(centre, rhs, upper=False).T
    return x[:, :, p : p + h, p : p + w]


class EmergingConv(Flow):
    """Emerging k×k convolution ``z = K_2 ⋆ (K_1 ⋆ x)`` (Hoogeboom et al. 2019, sec. 3.1).

    ``K_1`` is causal, ``K_2`` anti-causal (the flipped mask); the centre diagonals are
    ``exp(log_diag)`` so each convolution is invertible and
    ``log|det| = hw·(Σ log_diag_1 + Σ log_diag_2)`` (triangular Jacobians).

    Complexity per sample: forward and its backward ``O(c²k²·hw)``, fully parallel (two
    ``conv2d``); inverse the same work ``O(c²k²·hw)`` plus ``hw`` triangular ``c×c`` solves, but
    as ``2·hw`` *sequential* steps (raster order for ``K_1``'s inverse, reversed for ``K_2``'s),
    each one batched over the batch and solving all channels of a pixel at once.

    Init: ``log_diag = 0`` and free taps ``N(0, 0.01/(c k²))``: near, but not at, the identity.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        self.channels = channels
        self.kernel_size = kernel_size
        std = 0.1 / (channels * kernel_size**2) ** 0.5
        shape = (channels, channels, kernel_size, kernel_size)
        self.weight1 = nn.Parameter(torch.randn(shape) * std)
        self.weight2 = nn.Parameter(torch.randn(shape) * std)
        self.log_diag1 = nn.Parameter(torch.zeros(channels))
        self.log_diag2 = nn.Parameter(torch.zeros(channels))
        self.register_buffer("mask", autoregressive_mask(channels, kernel_size))

    def _causal_weight(self, weight: Tensor, log_diag: Tensor) -> Tensor:
        p = self.kernel_size // 2
        diag = torch.diag(log_diag.exp())[:, :, None, None]
        return weight * self.mask + F.pad(diag, (p, p, p, p))

    def kernels(self) -> tuple[Tensor, Tensor]:
        """The causal kernels of ``K_1`` and of ``K_2`` before flipping, masks applied."""
        return self._causal_weight(self.weight1, self.log_diag1), self._causal_weight(
            self.weight2, self.log_diag2
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, type(self).__name__)
        k1, k2 = self.kernels()
        z = causal_conv(causal_conv(x, k1), flip_kernel(k2))
        return z, self._logdet(x)

    def _logdet(self, x: Tensor) -> Tensor:
        hw = x.shape[-2] * x.shape[-1]
        return zero_logdet(x) + hw * (self.log_diag1.sum() + self.log_diag2.sum())

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(z, self.channels, f"{type(self).__name__}.inverse")
        k1, k2 = self.kernels()
        flip = (1, 2, 3)
        x1 = causal_conv_inverse(z.flip(flip), k2).flip(flip)
        return causal_conv_inverse(x1, k1), -self._logdet(z)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}"


@dataclass
class EmergingMixing(KernelMixing):
    """``mixing: {name: emerging, kernel_size: k}``: a k×k emerging convolution (k odd)."""

    name = "emerging"

    def build(self, shape: tuple[int, ...], level: int) -> Flow:
        return EmergingConv(shape[0], kernel_size=self.kernel_size)
