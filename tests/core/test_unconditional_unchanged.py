"""Unconditional models compute exactly what they did before contexts existed: log-densities of six
presets on a fixed batch (float64, training and eval mode, fixed seeds) and their state-dict keys
match ``unconditional_reference.json``, computed by the code of commit 32121fa (the last main
before conditional flows).

The models start from the initial states stored beside it (``unconditional_reference_states.pt``,
float32, as that code initialised them), not from a fresh initialisation: initialisation runs
float32 linear algebra (QR, LU, power iterations) whose last bits differ between CPUs (AVX2 and
AVX-512 kernels), and those bits reach the log-densities at about 1e-6. From a stored state the
computation is float64 throughout, so the comparison is to 1e-12: any change of what a layer
computes shows, a CPU's summation order does not. Each model is built from another seed than
the stored one, so a random initial value the state dict does not hold would show too.

Regenerate (both files) by running this file with the reference code on the path:
``PYTHONPATH=<checkout of 32121fa>/src python tests/core/test_unconditional_unchanged.py``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

import invflow

REFERENCE = Path(__file__).with_name("unconditional_reference.json")
STATES = Path(__file__).with_name("unconditional_reference_states.pt")
CASES = json.loads(REFERENCE.read_text())


def initial_model(name: str, overrides: dict, states: dict | None, seed: int) -> torch.nn.Module:
    """The preset built from ``seed``, then given its stored initial state (when ``states``)."""
    torch.manual_seed(seed)
    model = invflow.build_model(name, **overrides)
    if states is not None:
        model.load_state_dict(states[name])
    return model


def log_densities(model: torch.nn.Module, overrides: dict) -> dict:
    model = model.double()
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


@pytest.fixture(scope="module")
def states() -> dict:
    return torch.load(STATES, weights_only=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_unconditional_preset_computes_what_it_did_before_contexts(name: str, states: dict) -> None:
    reference = CASES[name]
    model = initial_model(name, reference["overrides"], states, seed=12345)
    now = log_densities(model, reference["overrides"])
    assert now["state_dict_keys"] == reference["state_dict_keys"]
    for mode in ("train", "eval"):
        torch.testing.assert_close(torch.tensor(now[mode], dtype=torch.float64),
                                   torch.tensor(reference[mode], dtype=torch.float64), rtol=1e-12, atol=1e-12)


if __name__ == "__main__":  # regenerate (on the version whose numbers are the reference)
    initial = {name: initial_model(name, case["overrides"], None, seed=0) for name, case in CASES.items()}
    torch.save({name: model.state_dict() for name, model in initial.items()}, STATES)
    json.dump({name: log_densities(initial[name], case["overrides"]) for name, case in CASES.items()},
              sys.stdout, indent=1)
