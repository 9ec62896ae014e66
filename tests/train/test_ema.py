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


def test_multi_tensor_update_equals_averaged_models_own() -> None:
    """``update_ema``'s two multi-tensor calls against ``AveragedModel.update_parameters`` over
    steps with changing weights (both warm-up and constant schedules)."""
    for schedule in ("warmup", "constant"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        fast, reference = make_ema(model, 0.9, schedule), make_ema(model, 0.9, schedule)
        for _ in range(5):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p))
                model[1].running_mean.add_(1.0)
            update_ema(fast, model)
            reference.update_parameters(model)
            for b_ref, b in zip(reference.module.buffers(), model.buffers()):
                b_ref.copy_(b)
        assert int(fast.n_averaged) == int(reference.n_averaged) == 5
        for a, b in zip(fast.module.state_dict().values(), reference.module.state_dict().values()):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
