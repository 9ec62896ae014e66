"""Rational-quadratic spline couplings (Durkan et al. 2019), on images (incl. 6x10) and vectors.

The conditioner's zero-initialised output layer is given random weights first, so the checks
run on visibly non-identity splines (the harness only perturbs zero parameters slightly).
"""
import torch

from harness import LayerCase
from invflow.layers.spline import SplineCoupling


def _spline(*args, **kwargs) -> SplineCoupling:
    layer = SplineCoupling(*args, **kwargs)
    last = layer.net[-1]
    with torch.no_grad():
        last.weight.normal_(0.0, 0.3)
        last.bias.normal_(0.0, 1.0)
    return layer


CASES = [
    LayerCase("spline-coupling-image-6x10", lambda: _spline((4, 6, 10), hidden=8), (4, 6, 10),
              at_shape=lambda s: (SplineCoupling(s, 6, bins=3, tail_bound=2.0), s)),
    LayerCase(
        "spline-coupling-odd-channels",
        lambda: _spline((3, 5, 4), hidden=8, swap=True, bins=5, tail_bound=1.5),
        (3, 5, 4),
    ),
    LayerCase("spline-coupling-vector", lambda: _spline((3,), hidden=16), (3,)),
    LayerCase(
        "spline-coupling-vector-one-bin",
        lambda: _spline((2,), hidden=16, swap=True, bins=1, tail_bound=1.0),
        (2,),
    ),
]
