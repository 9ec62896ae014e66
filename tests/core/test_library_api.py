"""The library surface a researcher builds on: one-file save/load for every family, a prior of
one's own, averaged residual log-densities with their standard error, low precision refused by
residual flows themselves, and models that accept their own samples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import invflow
from core.test_sampling_contract import FAMILIES, tiny
from invflow import AffineCoupling, FlowModel, SequentialFlow
from invflow.layers import ActNorm

SMALL = {
    "glow-mnist-tiny": {"model__steps_per_level": 1, "model__hidden_channels": 8, "data__image_size": 8},
    "woodbury-glow-cifar10-tiny": {
        "model__steps_per_level": 1,
        "model__hidden_channels": 8,
        "data__image_size": 8,
    },
    "macow-cifar10-tiny": {"model__steps_per_level": 1, "model__hidden_channels": 8, "data__image_size": 8},
    "resflow-mnist-tiny": {"model__blocks_per_scale": 1, "model__hidden_channels": 8, "data__image_size": 8},
    "resflow-hybrid-mnist-tiny": {
        "model__blocks_per_scale": 1,
        "model__hidden_channels": 8,
        "data__image_size": 8,
    },
    "glow-toy-rings": {"model__hidden_channels": 8},
    "resflow-toy-checkerboard": {
        "model__blocks_per_scale": 2,
        "model__hidden_channels": 8,
        "model__learn_norm_orders": "shared",
        "model__norm_orders": "2",
    },
    "glow-mnist-cond-tiny": {"model__steps_per_level": 1, "model__hidden_channels": 8, "data__image_size": 8},
}


def trained_like(name: str, dtype: torch.dtype = torch.float32) -> FlowModel:
    torch.manual_seed(0)
    model = invflow.build_model(name, **SMALL[name]).to(dtype)
    x = torch.rand(4, *model.input_shape, dtype=dtype) if len(model.input_shape) == 3 else torch.randn(4, 2)
    context = torch.arange(4) if model.context_spec is not None else None
    model.log_prob(x.to(dtype), context)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("name", sorted(SMALL))
def test_save_then_load_gives_the_same_model_exactly(name: str, tmp_path: Path) -> None:
    model = trained_like(name, torch.float64 if "toy" in name else torch.float32)
    path = invflow.save(model, tmp_path / "model.safetensors")
    loaded = invflow.load(path)
    assert loaded.config.to_dict() == model.config.to_dict() and loaded.dtype == model.dtype
    expected, got = model.state_dict(), loaded.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    model.eval()
    x = (
        torch.rand(3, *model.input_shape, dtype=model.dtype)
        if len(model.input_shape) == 3
        else torch.randn(3, 2, dtype=model.dtype)
    )
    context = torch.arange(3) if model.context_spec is not None else None
    torch.manual_seed(1)
    a = model.log_prob(x, context)
    torch.manual_seed(1)
    torch.testing.assert_close(loaded.log_prob(x, context), a, atol=0, rtol=0)


def test_save_refuses_to_overwrite_and_load_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    model = trained_like("glow-toy-rings")
    path = invflow.save(model, tmp_path / "m.safetensors")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        invflow.save(model, path)
    invflow.save(model, path, overwrite=True)
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a safetensors file"):
        invflow.load(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "x"})
    with pytest.raises(ValueError, match="not an invflow model"):
        invflow.load(tmp_path / "other.safetensors")
    save_file(
        {"w": torch.zeros(2)},
        str(tmp_path / "newer.safetensors"),
        metadata={"format": "invflow.model", "format_version": "99", "invflow": "9.0.0"},
    )
    with pytest.raises(ValueError, match="format 99; this invflow .* reads format 1: upgrade invflow"):
        invflow.load(tmp_path / "newer.safetensors")
    hand_made = FlowModel(SequentialFlow(ActNorm(2, vector=True)), invflow.StandardNormal((2,)), (2,))
    with pytest.raises(ValueError, match="needs a model built from a preset or config"):
        invflow.save(hand_made, tmp_path / "hand.safetensors")


class StudentT(nn.Module):
    """A user's heavy-tailed prior: independent Student-t coordinates, not a StandardNormal."""

    def __init__(self, dims: int, df: float = 4.0) -> None:
        super().__init__()
        self.dims, self.df = dims, df

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return torch.distributions.StudentT(self.df).log_prob(z).sum(dim=1)

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        return temperature * torch.distributions.StudentT(self.df).sample((n, self.dims))


def test_a_prior_of_ones_own_trains_and_samples() -> None:
    torch.manual_seed(0)
    flow = SequentialFlow(
        ActNorm(2, vector=True), AffineCoupling((2,), 16), AffineCoupling((2,), 16, swap=True)
    )
    model = FlowModel(flow, StudentT(2), input_shape=(2,))
    data = torch.randn(512, 2) * torch.tensor([2.0, 0.5]) + 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(100):
        loss = -model.log_prob(data).mean()
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    entropy = math.log(2 * math.pi * math.e) + math.log(2.0 * 0.5)  # the data's, in nats
    assert float(loss.detach()) < first and float(loss.detach()) < entropy + 0.1
    x, log_p = model.sample_and_log_prob(64)
    torch.testing.assert_close(model.log_prob(x), log_p, atol=1e-4, rtol=1e-5)
    assert model.rsample(8).requires_grad


def test_residual_log_prob_averages_draws_and_reports_its_standard_error() -> None:
    model = trained_like("resflow-mnist-tiny").eval()
    x = torch.rand(3, *model.input_shape)
    mean, stderr = model.log_prob_and_stderr(x, draws=6)
    assert mean.shape == stderr.shape == (3,) and bool((stderr > 0).all())
    torch.manual_seed(5)
    averaged = model.log_prob(x, draws=6)
    torch.manual_seed(5)
    torch.testing.assert_close(averaged, torch.stack([model.log_prob(x) for _ in range(6)]).mean(dim=0))
    exact = trained_like("glow-toy-rings").eval()
    assert float(exact.log_prob_and_stderr(torch.randn(4, 2), draws=3)[1].detach().abs().max()) == 0.0
    with pytest.raises(ValueError, match="needs draws >= 2"):
        model.log_prob_and_stderr(x, draws=1)


def test_residual_flows_refuse_low_precision_themselves() -> None:
    model = trained_like("resflow-mnist-tiny")
    with pytest.raises(ValueError, match="set_conditioner_precision.*Lip\\(g\\) < 1"):
        model.set_conditioner_precision(torch.bfloat16)
    assert model.set_conditioner_precision(None) == 0
    with pytest.raises(ValueError, match="do not run under torch.autocast"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.log_prob(torch.rand(2, *model.input_shape))
    assert trained_like("glow-mnist-tiny").set_conditioner_precision(torch.bfloat16) == 2  # 2 couplings


def test_backward_in_forward_is_a_config_option_for_weighted_losses() -> None:
    model = invflow.build_model(
        "resflow-mnist-tiny", model__backward_in_forward=False, **SMALL["resflow-mnist-tiny"]
    )
    x = torch.rand(3, *model.input_shape)
    weights = torch.tensor([1.0, 2.0, 3.0])
    (weights * model.log_prob(x)).sum().backward()  # refused with backward_in_forward (the default)
    default = invflow.build_model("resflow-mnist-tiny", **SMALL["resflow-mnist-tiny"])
    with pytest.raises(RuntimeError, match="backward_in_forward=False"):
        (weights * default.log_prob(x)).sum().backward()


@pytest.mark.parametrize("name", [*FAMILIES, "glow-mnist-cond-tiny"])
def test_a_model_accepts_its_own_raw_samples(name: str) -> None:
    """``log_prob(sample_and_log_prob(n)[0])`` for every family: the raw samples (at T = 1.5 a
    logit model's inverse reaches past [0, 1]) lie in the model's own domain."""
    model = trained_like(name) if "cond" in name else tiny(name)
    model.eval()
    context = torch.arange(8) % 10 if model.context_spec is not None else None
    torch.manual_seed(2)
    x, log_p = model.sample_and_log_prob(8, context=context, temperature=1.5)
    again = model.log_prob(x, context)
    assert bool(torch.isfinite(again).all())
    if model.estimator.startswith("exact"):
        torch.testing.assert_close(again, log_p, atol=1e-2, rtol=1e-4)


def test_evaluation_is_a_library_call_with_provenance(tmp_path, capsys) -> None:
    """``invflow.api.evaluate`` returns the result with where it came from, and ``invflow eval``
    prints exactly its lines."""
    from invflow.api import Evaluation, evaluate
    from invflow.cli import main
    from invflow.train.loop import train

    small = {"train.steps": 3, "train.eval_every": 3, "train.sample_every": 100, "train.checkpoint_every": 3,
             "train.tensorboard": False, "model.steps_per_level": 1, "data.toy_samples": 256,
             "data.batch_size": 32, "train.eval_batches": 1}
    train(invflow.load_config("glow-toy-rings", small), tmp_path / "run", progress=False)
    evaluation = evaluate(tmp_path / "run", batches=2)
    assert isinstance(evaluation, Evaluation)
    assert (evaluation.name, evaluation.step, evaluation.ema) == ("glow-toy-rings", 3, True)
    assert evaluation.result.metric == "bits" and evaluation.result.count == 64
    assert evaluation.data["dataset"] == "rings" and evaluation.data["count"] == 64
    assert "torch" in evaluation.versions and evaluation.generative_accuracy is None
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--batches", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == evaluation.lines()
