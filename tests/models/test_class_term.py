"""Glow's class-prediction term (``model.class_loss_weight``): the classifier reads the top latent
``z_L`` itself, the loss is ``bits/dim + w · bits_y``, the term's gradient reaches the flow, the
density and the samples are those of the plain conditional model, and every model it does not
fit is refused by name."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import invflow
from invflow.core.objectives import nats_to_bits_per_dim
from invflow.data.batch import Batch
from invflow.layers.conditional_prior import ConditionalGaussianPrior
from invflow.models.class_term import ClassPredictingFlowModel

SMALL = {"model__steps_per_level": 2, "model__hidden_channels": 8, "data__image_size": 8}


def build(weight: float, seed: int = 0) -> invflow.FlowModel:
    torch.manual_seed(seed)
    model = invflow.build_model("glow-mnist-cond-tiny", model__class_loss_weight=weight, **SMALL).double()
    x, y = images(6)
    with torch.no_grad():
        model.log_prob(x, y)  # ActNorm's data-dependent init
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # off the (zero / identity) init, so the classifier and the context act
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype) * (p.abs() + 0.1))
    return model


def images(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = 0.05 + 0.9 * torch.rand(n, 1, 8, 8, generator=gen, dtype=torch.float64)
    return x, torch.arange(n) % 10


def test_weight_zero_builds_the_plain_model_and_a_weight_the_class_predicting_one() -> None:
    assert type(build(0.0)) is invflow.FlowModel
    model = build(0.01)
    assert isinstance(model, ClassPredictingFlowModel)
    assert model.classifier.in_features == model.top_prior.channels
    assert model.classifier.out_features == 10


def test_the_classifier_reads_the_spatial_mean_of_the_top_latent() -> None:
    model = build(0.01)
    seen = {}

    def keep_input(module, args, output) -> None:
        seen["z_top"] = args[0]

    model.top_prior.register_forward_hook(keep_input)
    x, y = images(5)
    _, outputs = model(x, y)
    expected = model.classifier(seen["z_top"].mean(dim=(2, 3)))
    torch.testing.assert_close(outputs["logits"], expected, rtol=1e-10, atol=1e-12)
    assert [m for m in model.flow.modules() if isinstance(m, ConditionalGaussianPrior)] == [model.top_prior]


def test_density_and_samples_are_the_plain_models() -> None:
    with_term, plain = build(0.5), build(0.0)
    weights = with_term.state_dict()
    plain.load_state_dict({k: v for k, v in weights.items() if not k.startswith("classifier.")})
    x, y = images(6)
    torch.testing.assert_close(with_term.log_prob(x, y), plain.log_prob(x, y), rtol=0, atol=0)
    torch.testing.assert_close(with_term(x, y)[0], plain.log_prob(x, y), rtol=0, atol=0)
    torch.manual_seed(3)
    a = with_term.sample(4, context=y[:4], temperature=0.7)
    torch.manual_seed(3)
    b = plain.sample(4, context=y[:4], temperature=0.7)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_loss_is_bits_per_dim_plus_weighted_class_bits_and_every_parameter_learns() -> None:
    weight = 0.25
    model = build(weight)
    gen = torch.Generator().manual_seed(2)
    batch = Batch(torch.randint(0, 256, (6, 1, 8, 8), generator=gen, dtype=torch.uint8), torch.arange(6) % 10)
    objective = model.make_objective(8)
    torch.manual_seed(4)
    loss, metrics = objective.loss(model, batch)
    torch.manual_seed(4)  # the same dequantization noise
    x = objective.dequantized(model, batch)
    log_p, outputs = model(x, batch.y)
    class_bits = F.cross_entropy(outputs["logits"], batch.y) / math.log(2)
    expected = nats_to_bits_per_dim(log_p, model.dims, 8).mean() + weight * class_bits
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(metrics["class_bits"], class_bits.detach())
    assert set(metrics) == {"bpd", "class_bits", "class_accuracy"}
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_the_class_term_pulls_on_the_flow() -> None:
    """The gradient of ``bits_y`` alone reaches the couplings and the top prior, not only the classifier."""
    model = build(1.0)
    x, y = images(6)
    _, outputs = model(x, y)
    F.cross_entropy(outputs["logits"], y).backward()
    coupling = [p for n, p in model.named_parameters() if "classifier" not in n and p.grad is not None]
    assert sum(float(p.grad.abs().sum()) for p in coupling) > 0
    assert float(model.top_prior.params.linear.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize(("preset", "overrides", "message"), [
    ("glow-mnist-tiny", {"model__class_loss_weight": 0.01}, "needs model.conditional: true"),
    ("glow-mnist-cond-tiny", {"model__class_loss_weight": -0.1}, "finite number >= 0"),
    ("glow-mnist-cond-tiny", {"model__class_loss_weight": float("nan")}, "must be a finite number"),
    ("glow-mnist-cond-tiny", {"model__class_loss_weight": float("inf")}, "must be a finite number"),
    ("glow-toy-2moons-rotated", {"model__class_loss_weight": 0.01}, "class-conditional image model"),
])
def test_models_the_term_does_not_fit_are_refused_in_one_line(preset, overrides, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        invflow.build_model(preset, **overrides)
    assert "\n" not in str(info.value)
