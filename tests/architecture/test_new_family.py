"""Adding a model family is one new file (``toy_family.py``) plus one registry line: training,
evaluation, checkpoints and the loop's refusals follow from the model's hooks."""
from __future__ import annotations

import math

import pytest

import invflow
from invflow.models import FAMILIES, Family, config_from_dict
from invflow.train.loop import train

from .toy_family import ToyConfig, ToyModel, build

RAW = {
    "data": {"dataset": "8gaussians", "batch_size": 32, "toy_samples": 256},
    "model": {"family": "toy", "steps": 2, "hidden": 8},
    "train": {"steps": 3, "warmup_steps": 1, "eval_batches": 1, "eval_every": 100, "sample_every": 100,
              "checkpoint_every": 100, "log_every": 1, "n_samples_grid": 4, "tensorboard": False},
}


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(FAMILIES, "toy", Family(ToyConfig, build))  # the one registry line


def test_a_new_family_trains_evaluates_and_reloads(toy_registered, tmp_path) -> None:
    config = config_from_dict(RAW)
    assert config.family == "toy" and isinstance(config.model, ToyConfig)
    result = train(config, tmp_path / "run", progress=False)
    assert result.step == 3 and result.metric == "bits" and math.isfinite(result.test_value)
    model, loaded = invflow.load_checkpoint(tmp_path / "run")
    assert isinstance(model, ToyModel) and loaded.to_dict() == config.to_dict()


def test_the_loop_refuses_what_the_family_says_it_does_not_support(toy_registered, tmp_path) -> None:
    config = config_from_dict({**RAW, "train": {**RAW["train"], "compile": True}})
    with pytest.raises(ValueError, match="not supported by the toy family: the toy family opts out"):
        train(config, tmp_path / "run", progress=False)


def test_an_unregistered_family_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="model.family must be one of glow, hybrid, resflow, got 'toy'"):
        config_from_dict(RAW)
