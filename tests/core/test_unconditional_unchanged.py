"""Unconditional models compute exactly what they did before contexts existed: log-densities of six
presets on a fixed batch (float64, training and eval mode, fixed seeds) and their state-dict keys
are bit-identical to ``unconditional_reference.json``, written by commit 32121fa (the last main
before conditional flows) with ``python tests/core/test_unconditional_unchanged.py > ….json``."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

import invflow

REFERENCE = Path(__file__).with_name("unconditional_reference.json")
CASES = json.loads(REFERENCE.read_text())


def log_densities(name: str, overrides: dict) -> dict:
    torch.manual_seed(0)
    model = invflow.build_model(name, **overrides).double()
    gen = torch.Generator().manual_seed(1)
    shape = model.input_shape
    if len(shape) == 3:
        x = 0.05 + 0.9 * torch.rand(6, *shape, generator=gen, dtype=torch.float64)
    else:
        x = torch.randn(6, *shape, generator=gen, dtype=torch.float64)
    torch.manual_seed(2)
    train = model.log_prob(x)  # training mode: ActNorm's data-dependent init, the estimator's draws
    model.eval()
    torch.manual_seed(3)
    evaluated = model.log_prob(x)
    keys = hashlib.sha256("\n".join(sorted(model.state_dict())).encode()).hexdigest()
    return {
        "overrides": overrides,
        "train": train.tolist(),
        "eval": evaluated.tolist(),
        "state_dict_keys": keys,
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_unconditional_preset_is_bit_identical_to_before_contexts(name: str) -> None:
    assert log_densities(name, CASES[name]["overrides"]) == CASES[name]


if __name__ == "__main__":  # regenerate (on the version whose numbers are the reference)
    json.dump(
        {name: log_densities(name, case["overrides"]) for name, case in CASES.items()}, sys.stdout, indent=1
    )
