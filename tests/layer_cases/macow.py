"""MaCow units (Ma et al. 2019): non-square images (6x10), odd and single channel counts, kernels.

The zero-initialised output convs get random weights first, so every coupling is far from
its initial (pure scaling) map when the harness checks it.
"""
import torch

from harness import LayerCase
from invflow.layers.macow import MaCowUnit


def _macow(*args, **kwargs) -> MaCowUnit:
    layer = MaCowUnit(*args, **kwargs)
    with torch.no_grad():
        for coupling in layer.flows:
            last = coupling.head[-1]
            last.weight.normal_(0.0, 0.3)
            last.bias.normal_(0.0, 0.3)
    return layer


CASES = [
    LayerCase("macow-unit-6x10", lambda: _macow(3, hidden=8), (3, 6, 10),
              at_shape=lambda s: (MaCowUnit(s[0], hidden=6), s)),
    LayerCase("macow-unit-wide-kernel", lambda: _macow(2, hidden=6, kernel_size=(3, 5)), (2, 5, 4)),
    LayerCase(
        "macow-unit-one-channel-even-kernel", lambda: _macow(1, hidden=6, kernel_size=(1, 2)), (1, 4, 7)
    ),
]
