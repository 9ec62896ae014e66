"""The docstring examples of the public API run (issue 14 item 8): FlowModel's log_prob / sample /
sample_and_log_prob, a layer (AffineCoupling, with a custom conditioner), config loading and
build_model."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["invflow.core.model", "invflow.layers.coupling", "invflow.models.registry"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
