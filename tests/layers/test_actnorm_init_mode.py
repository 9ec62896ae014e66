"""ActNorm initialises itself only in training mode (or by ``initialize``) and never from a
non-finite batch (issue 12 item 3)."""
import pytest
import torch

from invflow.api import build_model
from invflow.layers.actnorm import ActNorm


def actnorm_state(model) -> list[torch.Tensor]:
    return [
        t.clone()
        for m in model.modules()
        if isinstance(m, ActNorm)
        for t in (m.bias, m.log_scale, m.initialized)
    ]


def test_eval_no_grad_log_prob_with_a_nan_pixel_touches_no_other_sample_and_no_parameter() -> None:
    torch.manual_seed(0)
    model = build_model("glow-mnist-tiny", model__hidden_channels=8, model__steps_per_level=2).eval()
    before = actnorm_state(model)
    x = torch.rand(4, 1, 28, 28)
    x[0, 0, 3, 3] = float("nan")
    with torch.no_grad():
        out = model.log_prob(x)
    assert torch.isnan(out[0]) and torch.isfinite(out[1:]).all()
    assert all(torch.equal(a, b) for a, b in zip(actnorm_state(model), before)), "eval mode changed ActNorm"
    with torch.no_grad():  # the clean samples alone give the same numbers: nothing leaked across the batch
        torch.testing.assert_close(model.log_prob(x[1:]), out[1:])


def test_training_mode_init_refuses_a_non_finite_batch_naming_the_layer() -> None:
    torch.manual_seed(0)
    model = build_model("glow-mnist-tiny", model__hidden_channels=8, model__steps_per_level=2)
    x = torch.rand(4, 1, 28, 28)
    x[2, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"level 1, step 1: ActNorm \(flow\.flows\.0\.flows\.1\): refusing "
                                         r"data-dependent initialisation from a batch with \d+ non-finite"):
        model.log_prob(x)
    assert all(torch.isfinite(t).all() for t in actnorm_state(model))
    model.log_prob(torch.rand(4, 1, 28, 28))  # a finite batch initialises as before
    assert all(bool(m.initialized) for m in model.modules() if isinstance(m, ActNorm))


def test_explicit_initialize_works_in_eval_mode() -> None:
    layer = ActNorm(3).eval()
    layer(torch.randn(8, 3, 4, 4))
    assert not bool(layer.initialized)
    layer.initialize(5 + torch.randn(8, 3, 4, 4))
    assert bool(layer.initialized)
