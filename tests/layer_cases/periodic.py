"""Periodic (Fourier) convolutions (Hoogeboom et al. 2019): even and odd widths, non-square."""
from harness import LayerCase
from invflow.layers.periodic import PeriodicConv

CASES = [
    LayerCase("periodic-3x3-6x10", lambda: PeriodicConv(3, 6, 10), (3, 6, 10),
              bad_shapes=[(3, 7, 10), (3, 6, 11), (3, 10, 6)],
              at_shape=lambda s: (PeriodicConv(*s, kernel_size=3 if min(s[1:]) >= 3 else 1), s)),
    LayerCase("periodic-3x3-odd-5x7", lambda: PeriodicConv(2, 5, 7), (2, 5, 7), bad_shapes=[(2, 7, 5)]),
    LayerCase("periodic-5x5-8ch", lambda: PeriodicConv(8, 5, 6, kernel_size=5), (8, 5, 6), batch=2,
              bad_shapes=[(8, 6, 5)]),
]
