"""Emerging convolutions (Hoogeboom et al. 2019) on square and non-square images."""
from harness import LayerCase
from invflow.layers.emerging import EmergingConv

CASES = [
    LayerCase("emerging-3x3-6x10", lambda: EmergingConv(3), (3, 6, 10),
              at_shape=lambda s: (EmergingConv(s[0], kernel_size=3), s)),
    LayerCase("emerging-1x1", lambda: EmergingConv(4, kernel_size=1), (4, 5, 3)),
    LayerCase("emerging-5x5-8ch", lambda: EmergingConv(8, kernel_size=5), (8, 4, 6), batch=2),
]
