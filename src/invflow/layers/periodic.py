"""Periodic (Fourier) convolutions (Hoogeboom, van den Berg & Welling 2019, sec. 3.2).

A k×k convolution with circular boundary on ``(c, h, w)`` images is block-diagonalised by the
2-D DFT: with ``K̂[u, v]`` the ``c×c`` DFT of the kernel zero-padded to ``h×w``,

    ŷ[u, v] = K̂[u, v] x̂[u, v],     log|det J| = Σ_{u,v} log|det K̂[u, v]|,

and the inverse solves ``K̂[u, v] x̂ = ŷ`` per frequency. The kernel is real, so
``K̂[-u, -v] = conj(K̂[u, v])``: the real-input FFT keeps only the columns ``v ≤ w/2`` and the
log-det counts the columns ``0 < v < w/2`` twice (their mirrors have equal ``|det|``), which
makes the sum real. Cost per sample: ``O(c·hw log hw)`` for the FFTs, ``O(c²·hw)`` for the
products and ``O(c³·hw)`` for the per-frequency determinants and solves.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invflow.core.flow import Flow, check_shape, zero_logdet
from invflow.layers.choices import KernelMixing


def kernel_spectrum(weight: Tensor, height: int, width: int) -> Tensor:
    """The ``(h, w//2+1, c_out, c_in)`` complex blocks ``K̂[u, v]`` of a ``(c, c, k, k)`` kernel.

    The kernel is flipped and centred at the origin of an ``h×w`` torus, so the periodic
    convolution matches ``conv2d`` (a cross-correlation) with circular padding ``k//2``.
    """
    k = weight.shape[-1]
    p = k // 2
    padded = F.pad(weight.flip(-2, -1), (0, width - k, 0, height - k))
    spectrum = torch.fft.rfft2(padded.roll((-p, -p), dims=(-2, -1)))
    return spectrum.permute(2, 3, 0, 1)


def _to_blocks(x: Tensor) -> Tensor:
    """``(B, c, h, w)`` real -> ``(h, w//2+1, c, B)`` spectrum, one ``c×B`` matrix per frequency."""
    return torch.fft.rfft2(x).permute(2, 3, 1, 0)


def _from_blocks(blocks: Tensor, height: int, width: int) -> Tensor:
    return torch.fft.irfft2(blocks.permute(3, 2, 0, 1), s=(height, width))


def periodic_conv(x: Tensor, spectrum: Tensor) -> Tensor:
    """``y`` with ``ŷ[u, v] = K̂[u, v] x̂[u, v]``: circular convolution in the DFT domain."""
    return _from_blocks(spectrum @ _to_blocks(x), *x.shape[-2:])


def periodic_conv_inverse(y: Tensor, spectrum: Tensor) -> Tensor:
    """``x`` with ``x̂[u, v] = K̂[u, v]^{-1} ŷ[u, v]``, by ``torch.linalg.solve`` per frequency."""
    return _from_blocks(torch.linalg.solve(spectrum, _to_blocks(y)), *y.shape[-2:])


def periodic_logdet(spectrum: Tensor, width: int) -> Tensor:
    """``Σ_{u,v} log|det K̂[u, v]|`` over all ``h·w`` frequencies, from the ``v ≤ w/2`` half.

    Columns ``0 < v < w/2`` stand for themselves and their conjugate mirrors ``w - v``.
    """
    logabsdet = torch.linalg.slogdet(spectrum).logabsdet
    multiplicity = torch.ones(spectrum.shape[1], dtype=logabsdet.dtype, device=logabsdet.device)
    multiplicity[1 : (width + 1) // 2] = 2.0
    return (logabsdet * multiplicity).sum()


class PeriodicConv(Flow):
    """Invertible k×k convolution with circular boundary, evaluated in the Fourier domain
    (Hoogeboom et al. 2019, sec. 3.2); ``log|det| = Σ_{u,v} log|det K̂[u, v]|``.

    Init: identity centre tap plus ``N(0, 0.01/(c k²))`` noise on every tap, so all frequency
    blocks start near the identity. Invertibility is not enforced during training (a block can
    in principle become singular); the ``-log|det|`` term of the likelihood pushes away from it.
    """

    def __init__(self, channels: int, height: int, width: int, kernel_size: int = 3) -> None:
        super().__init__()
        for name, size in (("channels", channels), ("height", height), ("width", width)):
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"{name} must be a positive integer, got {size!r}")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        if kernel_size > min(height, width):
            raise ValueError(f"kernel_size {kernel_size} exceeds the image size {height}x{width}")
        self.shape = (channels, height, width)
        self.kernel_size = kernel_size
        p = kernel_size // 2
        weight = torch.randn(channels, channels, kernel_size, kernel_size) * (
            0.1 / (channels * kernel_size**2) ** 0.5
        )
        weight[:, :, p, p] += torch.eye(channels)
        self.weight = nn.Parameter(weight)

    def spectrum(self) -> Tensor:
        """The ``(h, w//2+1, c, c)`` frequency blocks of the current kernel."""
        return kernel_spectrum(self.weight, *self.shape[1:])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(x, self.shape, type(self).__name__)
        spectrum = self.spectrum()
        return periodic_conv(x, spectrum), zero_logdet(x) + periodic_logdet(spectrum, self.shape[2])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(z, self.shape, f"{type(self).__name__}.inverse")
        spectrum = self.spectrum()
        return periodic_conv_inverse(z, spectrum), zero_logdet(z) - periodic_logdet(spectrum, self.shape[2])

    def extra_repr(self) -> str:
        return f"shape={self.shape}, kernel_size={self.kernel_size}"


@dataclass
class PeriodicMixing(KernelMixing):
    """``mixing: {name: periodic, kernel_size: k}``: a k×k periodic (Fourier) convolution (k odd)."""

    name = "periodic"

    def build(self, shape: tuple[int, ...], level: int) -> Flow:
        return PeriodicConv(*shape, kernel_size=self.kernel_size)
