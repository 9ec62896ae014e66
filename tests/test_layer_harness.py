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


# Flow classes with no case of their own, and why: containers are checked through the layers in them
STRUCTURE_ONLY = {"Flow": "the abstract contract", "SequentialFlow": "a container (every case chains it)",
                  "InverseFlow": "a container: the inverse of a checked layer"}


def _library_flow_classes() -> set[type]:
    import importlib
    import pkgutil

    import invflow
    from invflow.core.flow import Flow

    for info in pkgutil.walk_packages(invflow.__path__, "invflow."):
        if info.name != "invflow.__main__":
            importlib.import_module(info.name)
    found, todo = set(), [Flow]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("invflow.") and not sub.__name__.startswith("_"):
                found.add(sub)
    return found


def test_every_layer_of_the_library_has_a_harness_case() -> None:
    """What docs/architecture.md promises: each public ``Flow`` class of invflow is built by at
    least one case (directly or inside another layer), so the brute-force checks above cover it."""
    covered = {type(m) for case in CASES for m in case.build().modules()}
    missing = sorted(c.__name__ for c in _library_flow_classes() - covered
                     if c.__name__ not in STRUCTURE_ONLY)
    assert not missing, f"add a case to tests/layer_cases/ for {missing}"
