"""Multi-scale factor-out with a learned conditional Gaussian prior (RealNVP sec. 3.6; Glow sec. 3).

At a split, ``x = (x_1, x_2)`` along channels; ``x_2`` is factored out with the prior
``p(x_2 | x_1) = N(μ(x_1), diag σ(x_1)²)``. We write that prior as an affine flow onto a standard
normal, ``ε_2 = (x_2 − μ(x_1)) / σ(x_1)`` with ``log|det| = −Σ log σ(x_1)``, so that
``log p(x) = log N(z; 0, I) + logdet`` holds for the whole model
(docs/architecture.md section 8).
``x_1`` continues through the ``inner`` flow, which must return flat ``(B, n)`` latents.
The output is ``z = [flatten(ε_2), inner(x_1)]``.

``μ`` and ``log σ`` come from Glow's zero-initialised 3x3 convolution of ``x_1``, with the weights
of the ``log σ`` outputs divided at run time by ``fan_in = 9·C_1`` (the equalised-learning-rate
device of Karras et al. 2018, sec. 4.1: the same family of functions, another parametrisation):
``log σ = (W_σ * x_1) / (9·C_1) + b_σ``, ``μ = W_μ * x_1 + b_μ``. Why: Adam moves every weight by
about ``lr`` per step whatever its gradient's size, and on MNIST's background every tap of the patch
carries the same value, so a summing ``log σ`` head falls by up to ``lr·Σ|x_1|`` per step (≈ 0.065
at lr 1e-3 with the background's ``|x_1| ≈ 3.6`` measured at step 150, 65 times a per-channel
scale). The factored background turned sharp within ~100 steps, which multiplies the gradient of
every layer below by ``1/σ``: the global gradient norm (loss in nats) grew from 1.5k to a median 29k
over steps 126-150 against normflows' 7k, and global-norm clipping then shrank every other
parameter's step (README "vs_reference"; only the ``log σ`` head does this: a conditional mean with
``log σ = 0`` stayed below 13k over 300 steps). Divided by ``fan_in``, the head moves at the pace of
one parameter. The biases are not scaled. Checkpoints written before the divisor existed (no
``log_std_fan_in`` buffer) load with divisor 1, i.e. exactly the function they held.

A conditional factor-out (``context_features = k > 0``) adds a learned, zero-initialised
per-channel term of the context to both heads, ``[μ, log σ] += W c + b`` (``ContextBias``): with
one-hot labels a learned per-class mean and log-scale of every factored channel, as in Glow's
class-conditional models (Kingma & Dhariwal 2018, sec. 5); with ``context_per_position`` one per
factored channel and position. The context also goes to ``inner``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from invflow.core.context import ContextBias, check_layer_context
from invflow.core.flow import Flow, check_image, forward_of, inverse_of, inverse_without_logdet_of
from invflow.layers.conv_conditioner import ZeroConv2d


class FactorOut(Flow):
    """Factor out half the channels of ``(C, H, W)`` through a learned conditional Gaussian."""

    def __init__(self, shape: tuple[int, int, int], inner: Flow, learn_prior: bool = True,
                 context_features: int = 0, context_per_position: bool = False) -> None:
        super().__init__()
        self.shape = tuple(shape)
        c, h, w = self.shape
        if c < 2:
            raise ValueError(f"FactorOut: needs at least 2 channels, got {c}")
        self.kept = c - c // 2
        self.factored = c // 2
        self.n_factored = self.factored * h * w
        self.inner = inner
        self.prior_net = ZeroConv2d(self.kept, 2 * self.factored) if learn_prior else None
        if learn_prior:
            # the divisor of the log σ head's weights (a float buffer, exact in any precision: 9·C_1)
            self.register_buffer("log_std_fan_in", torch.tensor(float(9 * self.kept)))
        self.context_features = context_features
        if context_features:
            self.context_prior = ContextBias(2 * self.factored, context_features,
                                             spatial=self.shape[1:] if context_per_position else None)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # A checkpoint from before the divisor summed the log σ head (divisor 1): load that function exactly.
        key = prefix + "log_std_fan_in"
        if self.prior_net is not None and key not in state_dict and prefix + "prior_net.weight" in state_dict:
            state_dict[key] = torch.tensor(1.0)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def prior_weight(self) -> Tensor:
        """The prior convolution's effective weight: its ``log σ`` rows (odd output channels) divided
        by ``log_std_fan_in``."""
        weight = self.prior_net.weight
        divisor = torch.ones(weight.shape[0], 1, 1, 1, dtype=weight.dtype, device=weight.device)
        divisor[1::2] = self.log_std_fan_in
        return weight / divisor

    def _mean_log_std(self, x1: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        context = check_layer_context(context, self.context_features, x1.shape[0], self.describe())
        if self.prior_net is None:
            h = x1.new_zeros(x1.shape[0], 2 * self.factored, *x1.shape[2:])
        else:
            h = F.conv2d(x1, self.prior_weight(), self.prior_net.bias, padding=1)
        if context is not None:
            h = self.context_prior(h, context.to(h.dtype))
        mean, log_std = h.unflatten(1, (-1, 2)).unbind(2)  # channels interleave (mean, log σ)
        return mean, log_std

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_image(x, self.shape[0], "FactorOut.forward")
        if tuple(x.shape[2:]) != self.shape[1:]:
            raise ValueError(
                f"FactorOut.forward: expected spatial size {self.shape[1:]}, got {tuple(x.shape[2:])}"
            )
        x1, x2 = x.split((self.kept, x.shape[1] - self.kept), dim=1)
        mean, log_std = self._mean_log_std(x1, context)
        eps = (x2 - mean) * torch.exp(-log_std)
        z_inner, logdet = forward_of(self.inner, x1, context)
        logdet = logdet - log_std.reshape(x.shape[0], -1).sum(dim=1)
        return torch.cat([eps.reshape(x.shape[0], -1), z_inner], dim=1), logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        eps, x1, logdet = self._split_latents(z, lambda part: inverse_of(self.inner, part, context))
        mean, log_std = self._mean_log_std(x1, context)
        logdet = logdet + log_std.reshape(z.shape[0], -1).sum(dim=1)
        return torch.cat([x1, mean + torch.exp(log_std) * eps], dim=1), logdet

    def inverse_without_logdet(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        eps, x1, _ = self._split_latents(
            z, lambda part: (inverse_without_logdet_of(self.inner, part, context), None))
        mean, log_std = self._mean_log_std(x1, context)
        return torch.cat([x1, mean + torch.exp(log_std) * eps], dim=1)

    def _split_latents(self, z: Tensor, invert_inner) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(ε_2, x_1, inner log-det)``: the factored latents as an image, and ``x_1`` from the
        inner flow."""
        if z.dim() != 2 or z.shape[1] != self.n_factored + self.inner_dims:
            raise ValueError(
                f"FactorOut.inverse: expected flat latents (B, {self.n_factored + self.inner_dims}), "
                f"got {tuple(z.shape)}"
            )
        eps = z[:, : self.n_factored].reshape(z.shape[0], self.factored, *self.shape[1:])
        x1, logdet = invert_inner(z[:, self.n_factored :])
        return eps, x1, logdet

    @property
    def inner_dims(self) -> int:
        return self.kept * math.prod(self.shape[1:])
