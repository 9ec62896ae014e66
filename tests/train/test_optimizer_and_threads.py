"""The optimizer every run uses (train/optimizer.py: fused Adam where torch has it) against the
default per-parameter Adam loop, and ``train.threads`` (set for the run, restored after)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invflow.models.registry import load_config
from invflow.train import loop
from invflow.train.optimizer import make_adam


def _params(seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in [(7, 5), (5,), (), (3, 2, 2)]]


def test_fused_adam_takes_the_steps_of_the_default_loop() -> None:
    fused_params, loop_params = _params(0), _params(0)
    fused = make_adam(fused_params, 1e-2, 1e-3, torch.device("cpu"))
    plain = torch.optim.Adam(loop_params, lr=1e-2, weight_decay=1e-3, foreach=False, fused=False)
    assert fused.defaults["fused"]
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        grads = [torch.randn(p.shape, generator=gen) for p in fused_params]
        for ps, opt in ((fused_params, fused), (loop_params, plain)):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(fused_params, loop_params):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # the state saved by one loads into the other (checkpoints of either kind resume)
    plain.load_state_dict(fused.state_dict())
    fused.load_state_dict(plain.state_dict())


def test_devices_without_a_fused_kernel_get_the_multi_tensor_form() -> None:
    opt = make_adam(_params(0), 1e-3, 0.0, torch.device("meta"))
    assert opt.defaults["foreach"] and not opt.defaults["fused"]


def test_threads_are_set_for_the_run_and_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_train = loop._train
    monkeypatch.setattr(loop, "_train", lambda *a: (seen.append(torch.get_num_threads()), real_train(*a))[1])
    before = torch.get_num_threads()
    config = load_config("resflow-toy-checkerboard", {
        "train.steps": 2, "train.eval_batches": 1, "train.n_samples_grid": 4, "model.blocks_per_scale": 1,
        "data.batch_size": 8, "data.toy_samples": 16, "train.threads": 1})
    loop.train(config, tmp_path / "run", progress=False)
    assert seen == [1] and torch.get_num_threads() == before


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        load_config("resflow-toy-checkerboard", {"train.threads": 0})
