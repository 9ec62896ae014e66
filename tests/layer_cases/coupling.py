"""Affine and additive couplings, on images and vectors, with the library's conditioner and with
a user's own (a conditioner factory, issue 14 item 6)."""
from torch import nn

from harness import LayerCase
from invflow.layers.coupling import AdditiveCoupling, AffineCoupling
from invflow.layers.spline import SplineCoupling


def tanh_mlp(n_in: int, n_out: int) -> nn.Module:
    """A user's conditioner for vectors: one tanh hidden layer."""
    return nn.Sequential(nn.Linear(n_in, 12), nn.Tanh(), nn.Linear(12, n_out))


def gelu_conv(n_in: int, n_out: int) -> nn.Module:
    """A user's conditioner for images: 3x3 conv, GELU, 1x1 conv."""
    return nn.Sequential(nn.Conv2d(n_in, 6, 3, padding=1), nn.GELU(), nn.Conv2d(6, n_out, 1))


CASES = [
    LayerCase("affine-coupling-image", lambda: AffineCoupling((4, 4, 6), hidden=8), (4, 4, 6),
              at_shape=lambda s: (AffineCoupling(s, 6), s)),
    LayerCase(
        "affine-coupling-odd-channels", lambda: AffineCoupling((3, 4, 4), hidden=8, swap=True), (3, 4, 4)
    ),
    LayerCase("additive-coupling-image", lambda: AdditiveCoupling((4, 6, 4), hidden=8), (4, 6, 4),
              at_shape=lambda s: (AdditiveCoupling(s, 6, swap=True), s)),
    LayerCase("affine-coupling-vector", lambda: AffineCoupling((2,), hidden=16), (2,)),
    LayerCase("additive-coupling-vector", lambda: AdditiveCoupling((3,), hidden=16, swap=True), (3,)),
    LayerCase("affine-coupling-custom-mlp", lambda: AffineCoupling((3,), conditioner=tanh_mlp), (3,)),
    LayerCase(
        "affine-coupling-custom-conv",
        lambda: AffineCoupling((3, 4, 4), swap=True, conditioner=gelu_conv),
        (3, 4, 4),
    ),
    LayerCase("spline-coupling-custom-mlp", lambda: SplineCoupling((4,), bins=3, conditioner=tanh_mlp), (4,)),
]
