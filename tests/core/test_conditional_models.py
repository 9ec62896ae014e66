"""Conditional models p(x | c): the one contract (every method takes ``context``), one-line refusals
of every context that does not fit, sampling that agrees with ``log_prob`` per context, densities
that depend on the context and on each sample's own context only."""

from __future__ import annotations

import pytest
import torch

import invflow
from invflow.core.context import ContextSpec

SMALL_IMAGES = {"model__steps_per_level": 2, "model__hidden_channels": 8, "data__image_size": 8}
GLOW_FAMILY = {
    "glow-mnist-cond-tiny": SMALL_IMAGES,
    "woodbury-glow-mnist-cond-tiny": {
        **SMALL_IMAGES,
        "model__mixing__latent_channel": [2, 4],
        "model__mixing__latent_spatial": [4, 4],
    },
    "woodbury-glow-cifar10-cond-tiny": {**SMALL_IMAGES, "model__mixing__latent_spatial": [4, 4]},
    "glow-toy-2moons-rotated": {"model__steps_per_level": 3, "model__hidden_channels": 8},
    "glow-mnist-cond-tiny-spline": {**SMALL_IMAGES, "model__coupling": "spline"},
    "glow-mnist-cond-tiny-macow": {**SMALL_IMAGES, "model__coupling": "macow", "model__steps_per_level": 1},
}
RESIDUAL = {
    "resflow-mnist-cond-tiny": {
        "model__blocks_per_scale": 1,
        "model__hidden_channels": 8,
        "data__image_size": 8,
    },
    "resflow-toy-8gaussians-class": {"model__blocks_per_scale": 2, "model__hidden_channels": 8},
}


def build(name: str, overrides: dict) -> invflow.FlowModel:
    torch.manual_seed(0)
    preset = name.removesuffix("-spline").removesuffix("-macow")
    model = invflow.build_model(preset, **overrides).double()
    x, c = inputs(model, 6)
    with torch.no_grad():
        model.log_prob(x, c)  # ActNorm's data-dependent init
    perturb(model)
    return model.eval()


def perturb(model: torch.nn.Module) -> None:
    """Move every parameter off its (often identity) init, so contexts change something."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype) * (p.abs() + 0.1))


def inputs(model: invflow.FlowModel, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shape = model.input_shape
    if len(shape) == 3:
        x = 0.05 + 0.9 * torch.rand(n, *shape, generator=gen, dtype=torch.float64)
    else:
        x = torch.randn(n, *shape, generator=gen, dtype=torch.float64)
    spec = model.context_spec
    if spec.is_class:
        return x, torch.arange(n) % spec.num_classes
    return x, torch.randn(n, spec.context_dim, generator=gen, dtype=torch.float64)


ALL = {**GLOW_FAMILY, **RESIDUAL}


@pytest.mark.parametrize("name", sorted(ALL))
def test_density_depends_on_each_samples_own_context(name: str) -> None:
    model = build(name, ALL[name])
    x, c = inputs(model, 4)
    torch.manual_seed(5)
    with torch.no_grad():
        batched = model.log_prob(x, c)
        other = model.log_prob(x, c.roll(1, 0))
    assert float((batched - other).abs().min()) > 1e-6  # another context, another density
    exact = model.estimator.startswith("exact")
    for i in range(4):
        if exact:
            with torch.no_grad():
                alone = model.log_prob(x[i : i + 1], c[i : i + 1])
            torch.testing.assert_close(alone[0], batched[i], atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", sorted(GLOW_FAMILY))
def test_samples_of_a_context_have_the_log_prob_sample_and_log_prob_says(name: str) -> None:
    model = build(name, ALL[name])
    _, c = inputs(model, 5)
    torch.manual_seed(3)
    x, log_p = model.sample_and_log_prob(5, context=c)
    torch.testing.assert_close(model.log_prob(x, c), log_p, atol=1e-7, rtol=1e-9)
    torch.manual_seed(3)
    torch.testing.assert_close(model.sample(5, context=c, raw=True), x)
    torch.manual_seed(3)
    rx, rlog_p = model.rsample_and_log_prob(5, context=c)
    torch.testing.assert_close(rx.detach(), x)
    torch.testing.assert_close(rlog_p.detach(), log_p)
    assert rlog_p.requires_grad


@pytest.mark.parametrize("name", sorted(ALL))
def test_one_context_for_all_samples_and_per_class_temperature(name: str) -> None:
    model = build(name, ALL[name])
    _, c = inputs(model, 3)
    torch.manual_seed(4)
    one = model.sample(3, context=c[0])
    torch.manual_seed(4)
    repeated = model.sample(3, context=c[:1].expand(3, *c.shape[1:]))
    torch.testing.assert_close(one, repeated)
    torch.manual_seed(4)
    cold = model.sample(3, context=c[0], temperature=0.0, raw=True)
    torch.testing.assert_close(cold[0], cold[1])  # T = 0: the mode of the class, the same for each draw


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_context_that_does_not_fit_is_a_one_line_error(name: str) -> None:
    model = build(name, ALL[name])
    x, c = inputs(model, 3)
    spec = model.context_spec
    bad = [
        (None, "conditional and needs a context"),
        (c[:2], "batch size 2, the input 3"),
        ([0, 1, 2], "must be a tensor"),
        (0.5, "must be a tensor"),
    ]
    if spec.is_class:
        bad += [
            (torch.tensor([0, 1, spec.num_classes]), f"class label {spec.num_classes} is out of range"),
            (torch.tensor([0, -1, 1]), "class label -1 is out of range"),
            (c.double(), "got dtype torch.float64"),
            (c[:, None], r"got shape \(3, 1\)"),
        ]
    else:
        bad += [
            (c[:, :1], f"expected floating vectors \\(B, {spec.context_dim}\\), got shape"),
            (c.long(), "got dtype torch.int64"),
            (c * float("nan"), "NaN or infinite"),
        ]
    for context, message in bad:
        with pytest.raises(ValueError, match=message) as err:
            model.log_prob(x, context)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="batch size 3, the input 2"):
        model.sample(2, context=c)


def test_an_unconditional_model_refuses_a_context() -> None:
    model = invflow.build_model("glow-toy-rings", model__hidden_channels=8)
    with pytest.raises(ValueError, match="unconditional and takes no context"):
        model.log_prob(torch.randn(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="temperature is the keyword temperature="):
        model.sample(2, 0.7)  # the old positional temperature: refused, never read as a context


def test_conditional_needs_a_data_set_with_labels_and_the_hybrid_refuses_it() -> None:
    with pytest.raises(ValueError, match="data.dataset='rings' has none; data sets with them: .*mnist"):
        invflow.build_model("glow-toy-rings", model__conditional=True)
    with pytest.raises(ValueError, match="not supported by the hybrid model"):
        invflow.load_config("resflow-hybrid-mnist-tiny", {"model.conditional": True})


def test_context_spec_validates_itself() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ContextSpec()
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        ContextSpec(num_classes=1)
    assert ContextSpec(context_dim=3).features == 3 and ContextSpec(num_classes=10).features == 10


def test_generative_classifier_scores_every_class_with_the_same_random_numbers() -> None:
    """A fresh conditional residual flow ignores its label (zero-initialised context weights): with
    common random numbers every class gets exactly the same stochastic score, so argmax picks class
    0 and the accuracy is the share of label 0; independent draws would pick classes at random."""
    from invflow.data.batch import Batch
    from invflow.train.evaluate import generative_classifier_accuracy

    torch.manual_seed(0)
    model = invflow.build_model("resflow-mnist-cond-tiny", **RESIDUAL["resflow-mnist-cond-tiny"])
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    model.log_prob(images.float() / 256 + 1e-3, labels)  # ActNorm init
    batches = [Batch(images[:6], labels[:6]), Batch(images[6:], labels[6:])]
    accuracy, count = generative_classifier_accuracy(
        model, model.make_objective(8), iter(batches), torch.device("cpu"), seed=3
    )
    assert count == 12 and accuracy == 3 / 12
