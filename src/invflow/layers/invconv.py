"""Invertible 1x1 convolution, plain and LU-decomposed (Glow, Kingma & Dhariwal 2018, sec. 3.2).

``y_ij = W x_ij`` at every pixel, ``log|det| = H·W·log|det W|``. The LU form
``W = P L (U + diag(sign(s)·exp(log|s|)))`` makes ``log|det W| = Σ log|s|`` cost O(c).
On vectors (``vector=True``) the same map is an invertible linear layer with ``H·W = 1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invflow.core.flow import Flow, check_shape
from invflow.layers.choices import MixingChoice


class InvConv1x1(Flow):
    """Channel mixing by an invertible ``c x c`` matrix, initialised to a random rotation."""

    def __init__(self, channels: int, lu: bool = True, vector: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.lu = lu
        self.vector = vector
        w0 = torch.linalg.qr(torch.randn(channels, channels))[0]
        if lu:
            p, lower, upper = torch.linalg.lu(w0)
            s = torch.diagonal(upper)
            self.register_buffer("perm", p)
            self.register_buffer("sign_s", torch.sign(s))
            self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
            self.lower = nn.Parameter(lower)
            self.upper = nn.Parameter(torch.triu(upper, 1))
            self.log_s = nn.Parameter(torch.log(s.abs()))
        else:
            self.weight = nn.Parameter(w0)

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.channels, dtype=self.log_s.dtype, device=self.log_s.device)
        lower = self.lower * self.lower_mask + eye
        # eye * s rather than torch.diag(s): the same matrix, and exportable to ONNX by either exporter
        upper = self.upper * self.lower_mask.T + eye * (self.sign_s * torch.exp(self.log_s))
        return lower, upper

    def matrix(self) -> Tensor:
        """The ``c x c`` matrix ``W``."""
        if not self.lu:
            return self.weight
        lower, upper = self._factors()
        return self.perm @ lower @ upper

    def inverse_matrix(self) -> Tensor:
        """``W^{-1}``; from the LU factors by two triangular solves, ``U^{-1} L^{-1} P^T``."""
        if not self.lu:
            return torch.linalg.inv(self.weight)
        lower, upper = self._factors()
        lower_inv = torch.linalg.solve_triangular(
            lower,
            torch.eye(self.channels, dtype=lower.dtype, device=lower.device),
            upper=False,
            unitriangular=True,
        )
        return torch.linalg.solve_triangular(upper, lower_inv, upper=True) @ self.perm.T

    def log_abs_det(self) -> Tensor:
        """``log|det W|``."""
        if self.lu:
            return self.log_s.sum()
        return torch.linalg.slogdet(self.weight).logabsdet

    def _mix(self, x: Tensor, w: Tensor) -> Tensor:
        if self.vector:
            return x @ w.T
        if x.device.type == "cpu":  # one batched product: oneDNN's 1x1 convolution of a few
            # channels took 3x as long, forward and backward (Glow on MNIST: 4 and 8 channels);
            # bmm of the broadcast weight, not matmul, which copies x to fold the batch into rows
            # and the result back (2-2.7x as long, forward and backward)
            batch, channels, height, width = x.shape
            mixed = torch.bmm(w.expand(batch, -1, -1), x.reshape(batch, channels, height * width))
            return mixed.view(batch, channels, height, width)
        return F.conv2d(x, w.view(self.channels, self.channels, 1, 1))

    def _expected(self) -> tuple[int | None, ...]:
        return (self.channels,) if self.vector else (self.channels, None, None)

    def _logdet(self, x: Tensor) -> Tensor:
        pixels = 1 if self.vector else x.shape[2] * x.shape[3]
        return (pixels * self.log_abs_det()).to(x.dtype).expand(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(x, self._expected(), "InvConv1x1.forward")
        return self._mix(x, self.matrix()), self._logdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(z, self._expected(), "InvConv1x1.inverse")
        return self._mix(z, self.inverse_matrix()), -self._logdet(z)


@dataclass
class LUMixing(MixingChoice):
    """``mixing: lu``: the LU-decomposed 1x1 convolution (Glow's default); an invertible linear
    layer on vector data."""

    name = "lu"
    images_only = False

    def build(self, shape: tuple[int, ...], level: int) -> Flow:
        return InvConv1x1(shape[0], lu=True, vector=len(shape) == 1)


@dataclass
class PlainMixing(MixingChoice):
    """``mixing: 1x1``: the 1x1 convolution with a full weight matrix (``log|det W|`` by ``slogdet``)."""

    name = "1x1"

    def build(self, shape: tuple[int, ...], level: int) -> Flow:
        return InvConv1x1(shape[0], lu=False)
