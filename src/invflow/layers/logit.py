"""Logit transform of dequantized images (RealNVP, Dinh et al. 2017, sec. 4.1; Chen et al. 2019, app. E).

``s = logit(α + (1 − 2α)·x)`` for ``x`` in [0, 1], with
``log|ds/dx| = log(1 − 2α) − log p − log(1 − p)``, ``p = α + (1 − 2α)x``, per dimension.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from invflow.core.flow import Flow, check_shape


class LogitTransform(Flow):
    """Map [0, 1]-valued data to the real line; ``alpha`` keeps the logit away from ±∞."""

    def __init__(self, shape: tuple[int, ...], alpha: float = 1e-5) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"LogitTransform: alpha must be in [0, 0.5), got {alpha}")
        self.shape = tuple(shape)
        self.alpha = alpha

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(x, self.shape, "LogitTransform.forward")
        # The transform's domain, p = α + (1 − 2α)x in [0, 1]: dequantized images in [0, 1] and the
        # inverse's own outputs (a raw sample reaches −α/(1−2α)). One reduction and one host sync per
        # forward; the message's min/max are computed only on error.
        low, high = self.domain()
        if not torch.compiler.is_compiling() and bool(((x < low) | (x > high)).any()):
            raise ValueError(
                f"LogitTransform.forward: inputs must be dequantized images in [0, 1] (the transform's "
                f"domain is [{low:.4g}, {high:.4g}]), got values in "
                f"[{float(x.min()):.4g}, {float(x.max()):.4g}]"
            )
        p = self.alpha + (1 - 2 * self.alpha) * x
        s = torch.log(p) - torch.log1p(-p)
        return s, -self._inverse_logdet(s)

    def domain(self) -> tuple[float, float]:
        """``[−α/(1−2α), (1−α)/(1−2α)]``: where ``α + (1 − 2α)x`` lies in [0, 1]; it contains [0, 1]
        and every output of ``inverse``."""
        margin = self.alpha / (1 - 2 * self.alpha)
        return -margin, 1 + margin

    def _inverse_logdet(self, s: Tensor) -> Tensor:
        """``log|det dx/ds|`` at the logit ``s``: ``Σ log σ(s)(1 − σ(s)) − log(1 − 2α)``, written as
        ``−softplus(−s) − softplus(s)`` so it stays finite for ``p`` near 0 or 1."""
        elementwise = -math.log(1 - 2 * self.alpha) - F.softplus(-s) - F.softplus(s)
        return elementwise.reshape(s.shape[0], -1).sum(dim=1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(z, self.shape, "LogitTransform.inverse")
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha), self._inverse_logdet(z)
