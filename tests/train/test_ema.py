"""The EMA of the weights: warmed-up decay, the arithmetic of one update, buffers copied."""
import torch
from torch import nn

from invflow.train.ema import ema_decay_at, make_ema, update_ema


def test_decay_warms_up_to_its_target() -> None:
    assert ema_decay_at(0.999, 0) == 0.1
    assert ema_decay_at(0.999, 90) == 0.91
    assert ema_decay_at(0.999, 100_000) == 0.999


def test_updates_follow_the_formula_and_copy_buffers() -> None:
    model = nn.BatchNorm1d(2)
    ema = make_ema(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(2.0)
    update_ema(ema, model)  # first update copies
    assert torch.equal(ema.module.weight, torch.full((2,), 2.0))
    with torch.no_grad():
        model.weight.fill_(4.0)
        model.running_mean.fill_(7.0)
    update_ema(ema, model)  # n = 1: d = min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.module.weight, torch.full((2,), d * 2.0 + (1 - d) * 4.0))
    assert torch.equal(ema.module.running_mean, torch.full((2,), 7.0))


def test_constant_schedule_is_the_papers_polyak_average() -> None:
    """Chen et al. 2019, app. E: Polyak averaging with a constant momentum of 0.999."""
    assert ema_decay_at(0.999, 0, "constant") == 0.999
    assert ema_decay_at(0.999, 5, "constant") == 0.999
    model = nn.Linear(1, 1, bias=False)
    ema = make_ema(model, decay=0.9, schedule="constant")
    with torch.no_grad():
        model.weight.fill_(1.0)
    update_ema(ema, model)  # first update copies
    with torch.no_grad():
        model.weight.fill_(3.0)
    update_ema(ema, model)
    torch.testing.assert_close(ema.module.weight, torch.full((1, 1), 0.9 * 1.0 + 0.1 * 3.0))


def test_unknown_schedule_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="EMA schedule"):
        make_ema(nn.Linear(1, 1), 0.9, "cosine")
