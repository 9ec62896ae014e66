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


def test_averaged_model_normalises_with_its_own_power_iteration_vectors() -> None:
    """The averaged weights' spectral norms come from vectors refined for them, not from the live
    model's copied ones (which give a lower bound: the averaged layer could exceed its bound);
    refining changes no weight, no live state and no random-number stream."""
    from invflow.models import build_model, load_config
    from invflow.residual import SpectralNormLinear
    from invflow.train.ema import averaged_model

    torch.manual_seed(0)
    model = build_model(load_config("resflow-toy-checkerboard-p2", {"model.blocks_per_scale": 2}))
    model.log_prob(torch.randn(64, 2))  # sizes the power-iteration vectors, as training's initialisation
    ema = make_ema(model, 0.5, "constant")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(4):
        loss = -model.log_prob(torch.randn(64, 2) * 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.after_optimizer_step()
        update_ema(ema, model)
    layers = [m for m in ema.module.modules() if isinstance(m, SpectralNormLinear)]

    def relative_errors() -> list[float]:
        with torch.no_grad():
            return [float(1 - m.operator_norm() / torch.linalg.matrix_norm(m.weight, 2)) for m in layers]

    ema.module.eval()
    assert max(relative_errors()) > 1e-5  # the copied vectors are stale for the averaged weights
    weights = [p.clone() for p in ema.module.parameters()]
    live = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert averaged_model(ema) is ema.module
    assert max(abs(e) for e in relative_errors()) < 1e-4
    assert all(torch.equal(a, b) for a, b in zip(weights, ema.module.parameters()))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in live.items())
    assert torch.equal(rng, torch.get_rng_state())
