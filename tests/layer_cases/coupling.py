"""Affine and additive couplings, on images and vectors."""
from invflow.layers.coupling import AdditiveCoupling, AffineCoupling

from harness import LayerCase

CASES = [
    LayerCase("affine-coupling-image", lambda: AffineCoupling((4, 4, 6), hidden=8), (4, 4, 6)),
    LayerCase("affine-coupling-odd-channels", lambda: AffineCoupling((3, 4, 4), hidden=8, swap=True), (3, 4, 4)),
    LayerCase("additive-coupling-image", lambda: AdditiveCoupling((4, 6, 4), hidden=8), (4, 6, 4)),
    LayerCase("affine-coupling-vector", lambda: AffineCoupling((2,), hidden=16), (2,)),
    LayerCase("additive-coupling-vector", lambda: AdditiveCoupling((3,), hidden=16, swap=True), (3,)),
]
