"""Property-based invertibility (hypothesis): every layer of the shared registry, over drawn channel
counts, spatial sizes, batch sizes and seeds, gives ``inverse(forward(x)) ≈ x`` and a finite log-det
of shape ``(B,)`` in float64. Bounded: few examples, derandomized, no example database."""
from collections.abc import Callable

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import LayerCase, all_cases, default_sampler, unit_interval_sampler
from invflow.core.flow import Flow
from invflow.layers import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelWoodbury,
    EmergingConv,
    InvConv1x1,
    LogitTransform,
    MaCowUnit,
    MEWoodbury,
    PeriodicConv,
    SpatialWoodbury,
    SplineCoupling,
    Squeeze,
    WoodburyMixing,
)
from invflow.layers.conditional_prior import ConditionalGaussianPrior
from invflow.layers.normalize import Standardize
from invflow.layers.woodbury import HeightWoodbury, WidthWoodbury
from invflow.residual import InvertibleResidualBlock, conv_residual_net

BOUNDED = settings(max_examples=40, deadline=None, derandomize=True, database=None)
Shape = tuple[int, int, int]

# Layer class name -> builder of that layer for any (C, H, W) it accepts, and the input shape to feed it.
FACTORIES: dict[str, Callable[[Shape], tuple[Flow, Shape]]] = {
    "ActNorm": lambda s: (ActNorm(s[0]), s),
    "Squeeze": lambda s: (Squeeze(s[0]), (s[0], 2 * s[1], 2 * s[2])),
    "LogitTransform": lambda s: (LogitTransform(s, alpha=0.05), s),
    "InvConv1x1": lambda s: (InvConv1x1(s[0], lu=True), s),
    "AffineCoupling": lambda s: (AffineCoupling(s, 6), s),
    "AdditiveCoupling": lambda s: (AdditiveCoupling(s, 6, swap=True), s),
    "SplineCoupling": lambda s: (SplineCoupling(s, 6, bins=3, tail_bound=2.0), s),
    "EmergingConv": lambda s: (EmergingConv(s[0], kernel_size=3), s),
    "PeriodicConv": lambda s: (PeriodicConv(*s, kernel_size=3 if min(s[1:]) >= 3 else 1), s),
    "MaCowUnit": lambda s: (MaCowUnit(s[0], hidden=6), s),
    "ConditionalGaussianPrior": lambda s: (ConditionalGaussianPrior(s, 3), s),
    "ChannelWoodbury": lambda s: (ChannelWoodbury(*s, latent_dim=2), s),
    "SpatialWoodbury": lambda s: (SpatialWoodbury(*s, latent_dim=3), s),
    "WidthWoodbury": lambda s: (WidthWoodbury(*s, latent_dim=2), s),
    "HeightWoodbury": lambda s: (HeightWoodbury(*s, latent_dim=2), s),
    "Standardize": lambda s: (Standardize(s, [0.5] * s[0], [0.3] * s[0]), s),
    "WoodburyMixing": lambda s: (WoodburyMixing(*s, latent_channel=2, latent_spatial=3), s),
    "MEWoodbury": lambda s: (MEWoodbury(*s, latent_channel=2, latent_height=2, latent_width=2), s),
    # The exact log-det needs the full Jacobian (seconds at 5x5x5); its value is the harness's job.
    "InvertibleResidualBlock": lambda s: (
        InvertibleResidualBlock(conv_residual_net(s[0], 6), s, "unbiased"),
        s,
    ),
}
# Registry layers whose construction is tied to one nested structure (and plain compositions of other
# layers): checked over seeds and batches only.
STRUCTURE_ONLY = {"FactorOut", "SequentialFlow"}
CASES = all_cases()


def check_invertible(layer: Flow, x: torch.Tensor, atol: float, features: int = 0, seed: int = 0) -> None:
    """Invertible at ``x``; a conditional layer (context width ``features``) at a random context."""
    gen = torch.Generator().manual_seed(seed)
    args = (torch.randn(x.shape[0], features, generator=gen, dtype=x.dtype),) if features else ()
    with torch.no_grad():
        z, logdet = layer(x, *args)
        x_rec, _ = layer.inverse(z, *args)
    assert logdet.shape == (x.shape[0],) and logdet.dtype == torch.float64
    assert torch.isfinite(logdet).all(), logdet
    torch.testing.assert_close(x_rec, x, atol=atol, rtol=0)


def test_every_registry_layer_has_a_shape_factory() -> None:
    kinds = {type(case.make()).__name__ for case in CASES}
    missing = kinds - set(FACTORIES) - STRUCTURE_ONLY
    assert not missing, f"add a (C, H, W) factory for {sorted(missing)} to FACTORIES"


@BOUNDED
@given(kind=st.sampled_from(sorted(FACTORIES)), channels=st.integers(2, 5), height=st.integers(2, 5),
       width=st.integers(2, 5), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_invertible_over_shapes_and_seeds(kind: str, channels: int, height: int, width: int, batch: int,
                                          seed: int) -> None:
    torch.manual_seed(seed)
    layer, shape = FACTORIES[kind]((channels, height, width))
    sampler = unit_interval_sampler if kind == "LogitTransform" else default_sampler
    features = getattr(layer, "context_features", 0)
    case = LayerCase(kind, lambda: layer, shape, batch=batch, sampler=sampler, context_features=features)
    check_invertible(case.build(seed), case.inputs(seed), atol=1e-8, features=features, seed=seed)


@BOUNDED
@given(case=st.sampled_from(CASES), batch=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_registry_cases_invertible_over_seeds(case: LayerCase, batch: int, seed: int) -> None:
    drawn = LayerCase(case.name, case.make, case.input_shape, batch=batch, sampler=case.sampler,
                      context_features=case.context_features)
    check_invertible(drawn.build(seed), drawn.inputs(seed), atol=max(case.inverse_atol, 1e-9),
                     features=case.context_features, seed=seed)
