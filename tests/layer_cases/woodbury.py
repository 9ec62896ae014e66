"""Woodbury transformations (Lu & Huang 2020): channel, spatial, Woodbury-Glow and ME-Woodbury.

Non-square 6x10 images, and a transposed 10x6 input among the bad shapes, catch h/w mix-ups.
"""
from harness import LayerCase
from invflow.layers.woodbury import (
    ChannelWoodbury,
    HeightWoodbury,
    MEWoodbury,
    SpatialWoodbury,
    WidthWoodbury,
    WoodburyMixing,
)


def _bad_sizes(c: int, h: int, w: int) -> list[tuple[int, int, int]]:
    return [(c, h + 1, w), (c, h, w + 1), (c, w, h)]


CASES = [
    LayerCase(
        "woodbury-channel-6x10",
        lambda: ChannelWoodbury(3, 6, 10, latent_dim=2),
        (3, 6, 10),
        bad_shapes=_bad_sizes(3, 6, 10),
    ),
    LayerCase(
        "woodbury-spatial-6x10",
        lambda: SpatialWoodbury(2, 6, 10, latent_dim=4),
        (2, 6, 10),
        bad_shapes=_bad_sizes(2, 6, 10),
    ),
    LayerCase(
        "woodbury-width-6x10",
        lambda: WidthWoodbury(3, 6, 10, latent_dim=4),
        (3, 6, 10),
        bad_shapes=_bad_sizes(3, 6, 10),
    ),
    LayerCase(
        "woodbury-height-6x10",
        lambda: HeightWoodbury(3, 6, 10, latent_dim=3),
        (3, 6, 10),
        bad_shapes=_bad_sizes(3, 6, 10),
    ),
    LayerCase(
        "woodbury-mixing-6x10",
        lambda: WoodburyMixing(3, 6, 10, latent_channel=2, latent_spatial=3),
        (3, 6, 10),
        bad_shapes=_bad_sizes(3, 6, 10),
    ),
    LayerCase("woodbury-mixing-latent-over-channels", lambda: WoodburyMixing(4, 4, 4, 6, 2), (4, 4, 4)),
    LayerCase(
        "woodbury-me-6x10",
        lambda: MEWoodbury(3, 6, 10, latent_channel=2, latent_height=3, latent_width=4),
        (3, 6, 10),
        bad_shapes=_bad_sizes(3, 6, 10),
    ),
    LayerCase(
        "woodbury-me-12ch",
        lambda: MEWoodbury(12, 4, 2, 4, 2, 1),
        (12, 4, 2),
        batch=2,
        bad_shapes=_bad_sizes(12, 4, 2),
    ),
]
