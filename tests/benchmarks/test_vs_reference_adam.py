"""``benchmarks/vs_reference.py`` gives both implementations' steps the same Adam: fused by default
(what ``invflow train`` uses), torch's per-parameter loop with ``--adam loop``; the two make the
same update up to rounding."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _contender(reference_models, seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    return reference_models.Contender("toy", model, lambda x: model(x).squeeze(1))


def test_fused_by_default_loop_on_request_same_update(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import reference_models
    import vs_reference

    made: list[dict] = []
    real_adam = torch.optim.Adam

    def recording_adam(params, **kwargs):
        made.append(kwargs)
        return real_adam(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    fused, loop = _contender(reference_models, 3), _contender(reference_models, 3)
    step_fused, step_loop = vs_reference.training_step(fused, x), vs_reference.training_step(loop, x, "loop")
    assert [kw.get("fused") for kw in made] == [True, None]
    for _ in range(3):
        step_fused()
        step_loop()
    for a, b in zip(fused.model.parameters(), loop.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(fused.model[1].weight, _contender(reference_models, 3).model[1].weight)
    with pytest.raises(ValueError, match="adam must be one of"):
        vs_reference.training_step(fused, x, "sgd")
