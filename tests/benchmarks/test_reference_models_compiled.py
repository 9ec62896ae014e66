"""``benchmarks/reference_models.py``'s compiled contenders compile only after the data-dependent
initialisation, as ``invflow train`` does: compiled before it, every ActNorm's first-batch branch
recompiled the graph until dynamo gave up and ran the model eagerly, so ``glow-compiled`` timed an
eager model. The compile call is replaced by a recorder here (no compilation in the test)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invflow.layers.actnorm import ActNorm

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_invflow_glow_compiles_after_actnorm_is_initialised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import reference_models

    contender = reference_models.invflow_glow(reference_models.GlowSize(1, 2, 8), compiled=True)
    model = contender.model
    seen: list[list[bool]] = []

    def record(net):
        seen.append([m.is_initialized() for m in model.modules() if isinstance(m, ActNorm)])
        return net

    monkeypatch.setattr(model, "compile_for_training", record)
    x = torch.rand(4, *reference_models.MNIST_SHAPE)
    assert not any(m.is_initialized() for m in model.modules() if isinstance(m, ActNorm))
    first = contender.log_prob(x)
    second = contender.log_prob(x)
    assert len(seen) == 1 and seen[0] and all(seen[0])  # compiled once, every ActNorm initialised by then
    assert first.shape == (4,) and torch.equal(first, second)


def test_reference_glow_runs_its_first_call_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import reference_models
    pytest.importorskip("normflows")

    compiled_calls: list[int] = []

    def fake_compile(fn):
        def run(x):
            compiled_calls.append(1)
            return fn(x)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    contender = reference_models.reference_glow(reference_models.GlowSize(1, 2, 8), compiled=True)
    x = torch.rand(4, *reference_models.MNIST_SHAPE)
    contender.log_prob(x)
    assert compiled_calls == []  # normflows' ActNorm initialises on the eager first call
    contender.log_prob(x)
    assert compiled_calls == [1]
