"""Woodbury transformations (Lu & Huang 2020): channel, spatial, width and height, Woodbury-Glow
and ME-Woodbury.

Non-square 6x10 images, and a transposed 10x6 input among the bad shapes, catch h/w mix-ups.
"""
from harness import LayerCase
from invflow.layers import woodbury as wb


def _bad_sizes(c: int, h: int, w: int) -> list[tuple[int, int, int]]:
    return [(c, h + 1, w), (c, h, w + 1), (c, w, h)]


# One axis each (appendix B): (case name, layer, channels, latent dimension on 6x10 images, latent
# dimension at drawn shapes).
AXES = [("channel", wb.ChannelWoodbury, 3, 2, 2), ("spatial", wb.SpatialWoodbury, 2, 4, 3),
        ("width", wb.WidthWoodbury, 3, 4, 2), ("height", wb.HeightWoodbury, 3, 3, 2)]

CASES = [
    *(LayerCase(f"woodbury-{axis}-6x10", lambda cls=cls, c=c, d=d: cls(c, 6, 10, latent_dim=d), (c, 6, 10),
                bad_shapes=_bad_sizes(c, 6, 10), at_shape=lambda s, cls=cls, e=e: (cls(*s, latent_dim=e), s))
      for axis, cls, c, d, e in AXES),
    LayerCase(
        "woodbury-mixing-6x10",
        lambda: wb.WoodburyMixing(3, 6, 10, latent_channel=2, latent_spatial=3),
        (3, 6, 10),
        bad_shapes=_bad_sizes(3, 6, 10),
        at_shape=lambda s: (wb.WoodburyMixing(*s, latent_channel=2, latent_spatial=3), s),
    ),
    LayerCase("woodbury-mixing-latent-over-channels", lambda: wb.WoodburyMixing(4, 4, 4, 6, 2), (4, 4, 4)),
    LayerCase(
        "woodbury-me-6x10",
        lambda: wb.MEWoodbury(3, 6, 10, latent_channel=2, latent_height=3, latent_width=4),
        (3, 6, 10),
        bad_shapes=_bad_sizes(3, 6, 10),
        at_shape=lambda s: (wb.MEWoodbury(*s, latent_channel=2, latent_height=2, latent_width=2), s),
    ),
    LayerCase(
        "woodbury-me-12ch",
        lambda: wb.MEWoodbury(12, 4, 2, 4, 2, 1),
        (12, 4, 2),
        batch=2,
        bad_shapes=_bad_sizes(12, 4, 2),
    ),
]
