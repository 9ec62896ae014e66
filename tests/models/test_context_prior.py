"""``model.context_prior``: the context's mean and log-scale per channel (Glow's) or per channel and
position, in the top prior and every factor-out prior of a Glow-family model; refused where it
cannot apply."""

from __future__ import annotations

import pytest
import torch

import invflow
from invflow.layers.conditional_prior import ConditionalGaussianPrior
from invflow.layers.split import FactorOut

SMALL = {"model__steps_per_level": 2, "model__hidden_channels": 8, "data__image_size": 8}


@pytest.mark.parametrize("choice", ["channel", "position"])
def test_every_prior_of_the_model_follows_the_choice(choice: str) -> None:
    model = invflow.build_model("glow-mnist-cond-tiny", model__context_prior=choice, **SMALL)
    priors = [m for m in model.modules() if isinstance(m, ConditionalGaussianPrior)]
    splits = [m for m in model.modules() if isinstance(m, FactorOut)]
    assert len(priors) == 1 and len(splits) == 1
    assert priors[0].per_position is (choice == "position")
    spatial = None if choice == "channel" else splits[0].shape[1:]
    assert splits[0].context_prior.spatial == spatial


def test_per_position_means_differ_across_positions_and_classes() -> None:
    torch.manual_seed(0)
    prior = ConditionalGaussianPrior((2, 3, 3), 4, per_position=True).double()
    with torch.no_grad():
        for p in prior.parameters():
            p.normal_()
    z = torch.zeros(2, 2, 3, 3, dtype=torch.float64)
    context = torch.eye(4, dtype=torch.float64)[:2]
    x, _ = prior.inverse(z, context)  # the class means μ(c) themselves
    assert not torch.allclose(x[:, :, 0, 0], x[:, :, 1, 2])
    assert not torch.allclose(x[0], x[1])


def test_the_fields_default_is_the_per_channel_prior_of_before() -> None:
    """A config without the field (a run made before it existed) builds the per-channel model."""
    torch.manual_seed(0)
    default = invflow.build_model("glow-mnist-tiny", model__conditional=True, **SMALL)
    torch.manual_seed(0)
    channel = invflow.build_model("glow-mnist-cond-tiny", model__context_prior="channel", **SMALL)
    preset = invflow.build_model("glow-mnist-cond-tiny", **SMALL)
    assert all(m.per_position for m in preset.modules() if isinstance(m, ConditionalGaussianPrior))
    assert default.state_dict().keys() == channel.state_dict().keys()
    for key, value in default.state_dict().items():
        assert torch.equal(value, channel.state_dict()[key]), key


def test_a_per_position_prior_of_vectors_is_refused_by_the_layer() -> None:
    with pytest.raises(ValueError, match="per_position needs a spatial shape"):
        ConditionalGaussianPrior((2,), 3, per_position=True)


@pytest.mark.parametrize(("preset", "overrides", "message"), [
    ("glow-mnist-tiny", {"model__context_prior": "position"}, "needs model.conditional: true"),
    ("glow-toy-2moons-rotated", {"model__context_prior": "position"}, "needs images"),
    ("glow-mnist-cond-tiny", {"model__context_prior": "pixel"}, "context_prior"),
])
def test_where_it_cannot_apply_it_is_refused_in_one_line(preset, overrides, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        invflow.build_model(preset, **overrides)
    assert "\n" not in str(info.value)
