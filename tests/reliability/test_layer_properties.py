"""Property-based invertibility (hypothesis): every layer of the shared registry, over drawn channel
counts, spatial sizes, batch sizes and seeds, gives ``inverse(forward(x)) ≈ x`` and a finite log-det
of shape ``(B,)`` in float64. Bounded: few examples, derandomized, no example database."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import LayerCase, all_cases
from invflow.core.flow import Flow

BOUNDED = settings(max_examples=40, deadline=None, derandomize=True, database=None)
CASES = all_cases()
# Layer class name -> the harness case that builds it for any (C, H, W) (its ``at_shape``): derived,
# so a new layer's case is the only place that says how to build it at another shape.
SHAPED = {type(case.make()).__name__: case for case in reversed(CASES) if case.at_shape is not None}
# Registry layers whose construction is tied to one nested structure (and plain compositions of other
# layers): checked over seeds and batches only.
STRUCTURE_ONLY = {"FactorOut", "SequentialFlow"}


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


def test_every_registry_layer_has_a_case_that_builds_it_at_any_shape() -> None:
    kinds = {type(case.make()).__name__ for case in CASES}
    missing = kinds - set(SHAPED) - STRUCTURE_ONLY
    assert not missing, f"give one harness case of {sorted(missing)} an at_shape"


@BOUNDED
@given(kind=st.sampled_from(sorted(SHAPED)), channels=st.integers(2, 5), height=st.integers(2, 5),
       width=st.integers(2, 5), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_invertible_over_shapes_and_seeds(kind: str, channels: int, height: int, width: int, batch: int,
                                          seed: int) -> None:
    torch.manual_seed(seed)
    shaped = SHAPED[kind]
    layer, shape = shaped.at_shape((channels, height, width))
    features = getattr(layer, "context_features", 0)
    case = LayerCase(kind, lambda: layer, shape, batch=batch, sampler=shaped.sampler,
                     context_features=features)
    check_invertible(case.build(seed), case.inputs(seed), atol=1e-8, features=features, seed=seed)


@BOUNDED
@given(case=st.sampled_from(CASES), batch=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_registry_cases_invertible_over_seeds(case: LayerCase, batch: int, seed: int) -> None:
    drawn = LayerCase(case.name, case.make, case.input_shape, batch=batch, sampler=case.sampler,
                      context_features=case.context_features)
    check_invertible(drawn.build(seed), drawn.inputs(seed), atol=max(case.inverse_atol, 1e-9),
                     features=case.context_features, seed=seed)
