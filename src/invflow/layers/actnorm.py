"""Activation normalisation (Glow, Kingma & Dhariwal 2018, sec. 3.1).

``y = (x + b) * exp(s)`` per channel, ``log|det| = H·W·Σ_c s_c`` for images and ``Σ_d s_d`` for
vectors. ``b`` and ``s`` are initialised from the first batch seen *in training mode* (or by an
explicit ``initialize(x)``) so that the output has zero mean and unit variance per channel; after
that they are ordinary parameters. In eval mode an uninitialised layer is the identity and
stays uninitialised: evaluating or sampling never changes a model. A batch with a non-finite
value is refused (``ValueError`` naming the layer) instead of turning ``b`` and ``s`` into NaN
for good. The ``initialized`` flag is a buffer, so the initialisation survives ``state_dict``
save/load; a Python copy of it, once true, spares the training step from reading the buffer,
so ``torch.compile`` traces the layer without a data-dependent branch (a graph break in every
ActNorm, and a recompilation per layer, otherwise).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from invflow.core.flow import Flow, check_shape

# Channels whose init-batch std is below this keep unit scale instead of an enormous one
# (a constant channel, e.g. an always-black MNIST border after squeezing, would otherwise
# get log-scale -log(0) = inf, which is the NaN failure other libraries are known for).
MIN_INIT_STD = 1e-6


class ActNorm(Flow):
    """Per-channel affine ``y = (x + b) · exp(s)`` with data-dependent init (Glow eq. in Table 1)."""

    def __init__(self, channels: int, vector: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.vector = vector
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
        self._known_initialized = False  # True once the buffer is known to be True
        self.register_load_state_dict_post_hook(lambda module, _: module._forget_initialized())

    def _forget_initialized(self) -> None:
        self._known_initialized = False

    def is_initialized(self) -> bool:
        """Whether ``b`` and ``s`` have been set from data (the buffer, read once it is true)."""
        if not self._known_initialized:
            self._known_initialized = bool(self.initialized)
        return self._known_initialized

    def _expected(self) -> tuple[int | None, ...]:
        return (self.channels,) if self.vector else (self.channels, None, None)

    def _view(self, p: Tensor) -> Tensor:
        return p.view(1, -1) if self.vector else p.view(1, -1, 1, 1)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set ``b = -mean``, ``s = -log std`` per channel from batch ``x``; unit scale where std ≈ 0."""
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(
                f"{self.describe()}: refusing data-dependent initialisation from a batch with {bad} "
                f"non-finite value(s) of {x.numel()}; initialise from finite data"
            )
        dims = [0] if self.vector else [0, 2, 3]
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, unbiased=False) if x.shape[0] * x[0, 0].numel() > 1 else torch.ones_like(mean)
        log_scale = torch.where(
            std > MIN_INIT_STD, -torch.log(std.clamp_min(MIN_INIT_STD)), torch.zeros_like(std)
        )
        self.bias.copy_(-mean)
        self.log_scale.copy_(log_scale)
        self.initialized.fill_(True)
        self._known_initialized = True

    def _logdet(self, x: Tensor) -> Tensor:
        pixels = 1 if self.vector else x.shape[2] * x.shape[3]
        return (pixels * self.log_scale.sum()).to(x.dtype).expand(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(x, self._expected(), "ActNorm.forward")
        if self.training and not self.is_initialized():
            self.initialize(x)
        y = (x + self._view(self.bias)) * torch.exp(self._view(self.log_scale))
        return y, self._logdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(z, self._expected(), "ActNorm.inverse")
        return z * torch.exp(-self._view(self.log_scale)) - self._view(self.bias), -self._logdet(z)
