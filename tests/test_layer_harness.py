"""The generic layer checks of ``invflow.testing``, run on every case of the shared registry
(tests/harness.py), for several contexts when the case is conditional, on the test device
(tests/devices.py)."""
from __future__ import annotations

import pytest
import torch
from devices import TEST_DEVICE

from harness import LayerCase, all_cases
from invflow import testing

CASES = all_cases()
pytestmark = pytest.mark.device


def _each_context(case: LayerCase):
    layer = case.build()
    x = case.inputs()
    for context in case.contexts():
        yield layer, x, context


@pytest.mark.parametrize("case", CASES, ids=str)
def test_inverse_of_forward_is_identity_and_inverse_logdet_is_minus_forward(case: LayerCase) -> None:
    for layer, x, context in _each_context(case):
        testing.check_inverse(layer, x, context, atol=case.inverse_atol, logdet_atol=case.logdet_atol)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_logdet_matches_autograd_jacobian(case: LayerCase) -> None:
    for layer, x, context in _each_context(case):
        _, logdet = layer(x) if context is None else layer(x, context)
        assert logdet.dtype == torch.float64
        testing.check_logdet(layer, x, context, atol=case.logdet_atol)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_samples_and_their_contexts_are_independent(case: LayerCase) -> None:
    for layer, x, context in _each_context(case):
        testing.check_batch_independence(layer, x, context)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_parameter_receives_a_gradient(case: LayerCase) -> None:
    for layer, x, context in _each_context(case):
        assert testing.check_gradients(layer, x, context) == sum(p.requires_grad for p in layer.parameters())


@pytest.mark.parametrize("case", [c for c in CASES if c.context_features], ids=str)
def test_conditional_layers_read_their_context_and_refuse_a_missing_one(case: LayerCase) -> None:
    layer, x = case.build(), case.inputs()
    for context in case.contexts():
        testing.check_context_used(layer, x, context)
    with pytest.raises(ValueError, match="conditional and needs a context"):
        layer(x)
    with pytest.raises(ValueError, match="expected a context of shape"):
        layer(x, case.contexts()[0][:, :-1])


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_shapes_raise_value_error(case: LayerCase) -> None:
    layer = case.build()
    context = case.contexts()[0]
    for shape in case.wrong_shapes():
        x = torch.zeros(2, *shape, dtype=torch.float64, device=TEST_DEVICE) + 0.5
        with pytest.raises(ValueError):
            layer(x) if context is None else layer(x, context[:2])
