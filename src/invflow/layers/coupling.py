"""Affine and additive coupling layers (Dinh et al. 2017; Glow, Kingma & Dhariwal 2018, sec. 3.3).

The input is split along dim 1 into ``(x_a, x_b)``; ``x_a`` passes through unchanged and
conditions the transform of ``x_b``:

- affine:   ``y_b = (x_b + t(x_a)) * s(x_a)``, ``log s = bounded_log_scale(h)``, ``log|det| = Σ log s``;
- additive: ``y_b = x_b + t(x_a)``, ``log|det| = 0``.

Images are ``(B, C, H, W)`` with convolutional conditioners; vectors ``(B, D)`` with MLPs. A
coupling builds its conditioner from ``hidden`` (Glow's network), or from a user's
``conditioner(in_channels, out_channels)`` factory (like nflows' ``transform_net_create_fn``).

A conditional coupling (``context_features = k > 0``) computes ``h = NN(x_a, c)``. The library's
conditioners add a learned bias of the context ``(B, k)`` to their first hidden layer (for one-hot
labels, a learned per-class bias of each hidden unit); a user's conditioner factory receives
``in_channels = n_a + k`` and reads ``[x_a, c]``, the context broadcast over the spatial grid as
``k`` more input channels. The map of ``x_b`` for a fixed ``c`` is the one above, so the log-det
and inverse are unchanged.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invflow.core.context import ContextBias, broadcast_context, check_layer_context
from invflow.core.flow import Flow, check_shape, zero_logdet
from invflow.core.hooks import LowPrecisionConditioner
from invflow.layers.choices import CouplingChoice
from invflow.layers.conv_conditioner import ConvConditioner

# Lower bound of log s: the inverse multiplies by at most e^5 ≈ 148 per coupling. Measured on
# glow-mnist-tiny (400 steps): on test data log s stays above -7.3 (0.1% quantile -2.7), while
# sampling at T = 0.7 drove it to -77 in one coupling and to -1e31 in the next (a conditioner
# fed an out-of-distribution input outputs a huge h, exp(-h) explodes, the next conditioner
# sees a huger input ...), so 105 of 256 samples at T = 1 were non-finite.
LOG_SCALE_BOUND = 5.0


def bounded_log_scale(h: Tensor, bound: float = LOG_SCALE_BOUND) -> Tensor:
    """``log s = −B·tanh(softplus(−(h + 2)) / B) ∈ (−B, 0)``.

    Glow's ``log sigmoid(h + 2)`` (Kingma & Dhariwal 2018, Table 1) is ``−softplus(−(h + 2))``; the
    smooth ``B·tanh(·/B)`` leaves it unchanged where ``|log s| ≪ B`` (at init ``h = 0``:
    −0.12690 vs −0.12693) and bounds it, so the inverse ``1/s ≤ e^B`` stays finite on inputs the
    conditioner never saw: the exploding-inverse failure of affine couplings (Behrmann et al.
    2021, "Understanding and mitigating exploding inverses in invertible neural networks").
    """
    return -bound * torch.tanh(F.softplus(-(h + 2.0)) / bound)


class MLPConditioner(nn.Sequential):
    """Conditioner for vector data: two hidden ReLU layers, zero-initialised output; with
    ``context_features = k > 0`` a learned bias of the context on the first hidden layer (as
    ``ConvConditioner``)."""

    def __init__(self, in_features: int, out_features: int, hidden_features: int,
                 context_features: int = 0) -> None:
        last = nn.Linear(hidden_features, out_features)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(
            nn.Linear(in_features, hidden_features),
            nn.ReLU(),
            nn.Linear(hidden_features, hidden_features),
            nn.ReLU(),
            last,
        )
        self.context_features = context_features
        if context_features:
            self.context_bias = ContextBias(hidden_features, context_features)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self[0](x)
        if context is not None:
            h = self.context_bias(h, context)
        return self[4](self[3](self[2](self[1](h))))


def mlp_coupling_net(in_features: int, out_features: int, hidden_features: int) -> nn.Module:
    """Conditioner for vector data: two hidden ReLU layers, zero-initialised output."""
    return MLPConditioner(in_features, out_features, hidden_features)


#: ``conditioner(in_channels, out_channels) -> nn.Module``: a network mapping ``x_a``, shape
#: ``(B, in_channels, *spatial)``, to the transform's parameters ``(B, out_channels, *spatial)``.
ConditionerFactory = Callable[[int, int], nn.Module]


def default_conditioner(shape: tuple[int, ...], hidden: int, context_features: int = 0) -> ConditionerFactory:
    """Glow's conditioner for images ``(C, H, W)``, an MLP for vectors ``(D,)``, ``hidden`` wide,
    reading a context of width ``context_features`` on its first hidden layer."""
    if len(shape) == 1:
        return lambda n_in, n_out: MLPConditioner(n_in, n_out, hidden, context_features)
    return lambda n_in, n_out: ConvConditioner(n_in, n_out, hidden, context_features)


class _Coupling(LowPrecisionConditioner, Flow):
    """Shared split/merge and input checks; subclasses define the transform of ``x_b``.

    The conditioner network comes from ``conditioner(in_channels, out_channels)`` when given, else
    from ``default_conditioner(shape, hidden)``; exactly one of ``hidden`` and ``conditioner`` is
    set. ``autocast_dtype`` (set by ``FlowModel.set_conditioner_precision``) runs only the
    conditioner network in bf16/fp16; its output is cast back, so the transform and log-det stay
    in the input's precision. ``context_features > 0`` makes the conditioner read the context too
    (module docstring).
    """

    params_per_dim = 1

    def __init__(self, shape: tuple[int, ...], hidden: int | None = None, swap: bool = False,
                 conditioner: ConditionerFactory | None = None, context_features: int = 0) -> None:
        super().__init__()
        name = type(self).__name__
        self.shape = tuple(shape)
        if len(self.shape) not in (1, 3):
            raise ValueError(f"{name}: shape must be (D,) or (C, H, W), got {shape}")
        channels = self.shape[0]
        if channels < 2:
            raise ValueError(f"{name}: needs at least 2 channels, got {channels}")
        if (hidden is None) == (conditioner is None):
            raise ValueError(f"{name}: give either hidden (the default conditioner's width) or a conditioner "
                             "factory, not both or neither")
        if context_features < 0:
            raise ValueError(f"{name}: context_features must be >= 0, got {context_features}")
        self.swap = swap
        self.split = channels // 2
        self.n_a = channels - self.split if swap else self.split
        self.n_params = self.params_per_dim * (channels - self.n_a)
        self.context_features = context_features
        # the library's conditioners read the context themselves; a user's reads it as input channels
        self.concat_context = conditioner is not None
        if conditioner is None:
            self.net = default_conditioner(self.shape, hidden, context_features)(self.n_a, self.n_params)
        else:
            self.net = conditioner(self.n_a + context_features, self.n_params)

    def _check(self, x: Tensor, where: str) -> None:
        check_shape(x, (self.shape[0],) + (None,) * (len(self.shape) - 1), f"{type(self).__name__}.{where}")

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # split, not two slices: its backward is one cat (each slice's backward fills a zero tensor)
        first, second = x.split((self.split, x.shape[1] - self.split), dim=1)
        return (second, first) if self.swap else (first, second)

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat((b, a) if self.swap else (a, b), dim=1)

    def _conditioner(self, a: Tensor, context: Tensor | None) -> Tensor:
        context = check_layer_context(context, self.context_features, a.shape[0], self.describe())
        args: tuple[Tensor, ...] = ()
        if context is not None and self.concat_context:
            a = torch.cat([a, broadcast_context(context.to(a.dtype), a)], dim=1)
        elif context is not None:
            args = (context.to(a.dtype),)
        if self.autocast_dtype is None:
            h = self.net(a, *args)
        else:
            with torch.autocast(a.device.type, dtype=self.autocast_dtype):
                h = self.net(a, *args).to(a.dtype)
        if h.shape != (a.shape[0], self.n_params, *a.shape[2:]):
            raise ValueError(f"{self.describe()}: the conditioner must map {tuple(a.shape)} to "
                             f"{(a.shape[0], self.n_params, *a.shape[2:])}, got {tuple(h.shape)}")
        return h

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, "forward")
        a, b = self._split(x)
        y_b, logdet = self._transform(b, self._conditioner(a, context))
        return self._merge(a, y_b), logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z, "inverse")
        a, y_b = self._split(z)
        x_b, logdet = self._inverse_transform(y_b, self._conditioner(a, context))
        return self._merge(a, x_b), logdet


class AffineCoupling(_Coupling):
    """Glow's affine coupling ``y_b = (x_b + t) * s`` (Kingma & Dhariwal 2018, Table 1) with the
    scale bounded away from 0, ``log s = bounded_log_scale(h)``, so its inverse cannot explode.

    With the default conditioner (``hidden`` wide) or a network of one's own:

    >>> import torch
    >>> from torch import nn
    >>> layer = AffineCoupling((4, 8, 8), hidden=16)
    >>> x = torch.randn(2, 4, 8, 8)
    >>> z, logdet = layer(x)
    >>> x_back, inverse_logdet = layer.inverse(z)
    >>> torch.allclose(x_back, x, atol=1e-6), torch.allclose(inverse_logdet, -logdet)
    (True, True)
    >>> mine = AffineCoupling((2,), conditioner=lambda n_in, n_out: nn.Sequential(
    ...     nn.Linear(n_in, 32), nn.Tanh(), nn.Linear(32, n_out)))
    >>> mine(torch.randn(5, 2))[1].shape
    torch.Size([5])
    """

    params_per_dim = 2

    @staticmethod
    def _shift_scale(h: Tensor) -> tuple[Tensor, Tensor]:
        # Channels interleave (shift, pre-scale) so the two halves of the output conv are balanced;
        # unbind rather than strided slices, so the backward is one stack.
        shift, raw = h.unflatten(1, (-1, 2)).unbind(2)
        return shift, bounded_log_scale(raw)

    def _transform(self, b: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_scale(h)
        y = (b + shift) * torch.exp(log_scale)
        return y, log_scale.reshape(b.shape[0], -1).sum(dim=1)

    def _inverse_transform(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_scale(h)
        return y * torch.exp(-log_scale) - shift, -log_scale.reshape(y.shape[0], -1).sum(dim=1)


class AdditiveCoupling(_Coupling):
    """Volume-preserving coupling ``y_b = x_b + t(x_a)`` (NICE, Dinh et al. 2015)."""

    def _transform(self, b: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return b + h, zero_logdet(b)

    def _inverse_transform(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return y - h, zero_logdet(y)


@dataclass
class AffineChoice(CouplingChoice):
    """``coupling: affine``: :class:`AffineCoupling` with the default conditioner."""

    name = "affine"

    def build(self, shape: tuple[int, ...], hidden: int, swap: bool, context: int) -> Flow:
        return AffineCoupling(shape, hidden, swap=swap, context_features=context)


@dataclass
class AdditiveChoice(CouplingChoice):
    """``coupling: additive``: :class:`AdditiveCoupling` with the default conditioner."""

    name = "additive"

    def build(self, shape: tuple[int, ...], hidden: int, swap: bool, context: int) -> Flow:
        return AdditiveCoupling(shape, hidden, swap=swap, context_features=context)
