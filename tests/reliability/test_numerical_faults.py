"""Numerical faults: a blow-up learning rate, weights that turn non-finite, a fixed-point inverse
that does not converge. A run ends finished with finite checkpoints or stopped with a clear
message; a non-finite checkpoint is never written."""
from pathlib import Path

import pytest
import torch

from harness import randomize_parameters
from invflow import run_files
from invflow.core.model import FlowModel
from invflow.models import build_model, load_config
from invflow.residual import InvertibleResidualBlock, mlp_residual_net
from invflow.train import loop
from invflow.train.checkpoint import (
    CheckpointError,
    load_checkpoint_file,
    step_checkpoints,
    write_run_checkpoint,
)

TOY = {"model.steps_per_level": 2, "model.hidden_channels": 8, "data.batch_size": 16, "train.steps": 12,
       "train.checkpoint_every": 1, "train.eval_batches": 1, "train.log_every": 1, "data.toy_samples": 64,
       "train.keep_checkpoints": 20, "train.n_samples_grid": 4}


def assert_every_checkpoint_finite(run: Path) -> None:
    files = step_checkpoints(run / run_files.CHECKPOINTS) + [run / run_files.LAST_PATH]
    for path in filter(Path.is_file, files):
        state = load_checkpoint_file(path)
        for section in ("model", "ema"):
            for key, value in state[section].items():
                assert not value.is_floating_point() or torch.isfinite(value).all(), (
                    f"{path.name}: {section}.{key}"
                )


@pytest.mark.parametrize("lr", [1e6, 1e30])
def test_blow_up_learning_rate_finishes_finite_or_stops_clearly(lr: float, tmp_path: Path) -> None:
    config = load_config("glow-toy-rings", {**TOY, "train.lr": lr, "train.warmup_steps": 0})
    try:
        result = loop.train(config, tmp_path, progress=False)
        assert result.nonfinite > 0  # the first update blows up; the later losses are skipped
    except (loop.TrainingDiverged, CheckpointError) as err:
        assert "non-finite" in str(err) and "train.lr" in str(err)
    assert_every_checkpoint_finite(tmp_path)


def poison_weights_after_step(monkeypatch: pytest.MonkeyPatch, bad_step: int) -> None:
    """After optimizer step ``bad_step`` one weight becomes NaN, although loss and gradients were finite
    (what an overflowing update does)."""
    calls = {"n": 0}

    def after_optimizer_step(self: FlowModel) -> None:
        calls["n"] += 1
        if calls["n"] == bad_step:
            with torch.no_grad():
                next(self.parameters()).view(-1)[0] = float("nan")

    monkeypatch.setattr(FlowModel, "after_optimizer_step", after_optimizer_step)


def test_nonfinite_weights_are_never_checkpointed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    poison_weights_after_step(monkeypatch, bad_step=5)
    with pytest.raises(loop.TrainingDiverged, match="step 5: the update made weights non-finite"):
        loop.train(load_config("glow-toy-rings", TOY), tmp_path, progress=False)
    assert_every_checkpoint_finite(tmp_path)
    assert load_checkpoint_file(tmp_path / run_files.LAST_PATH)["step"] == 4


def test_checkpoint_writer_refuses_nonfinite_weights(tmp_path: Path) -> None:
    state = {"step": 3, "model": {"w": torch.tensor([1.0, float("nan")])}, "ema": {}}
    with pytest.raises(
        CheckpointError, match=r"step-00000003.pt: refusing .* non-finite .*model.w.*train.lr"
    ):
        write_run_checkpoint(state, tmp_path, keep=2)
    assert not any(tmp_path.iterdir())


def test_update_that_makes_weights_nonfinite_stops_the_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    poison_weights_after_step(monkeypatch, bad_step=5)
    config = load_config("glow-toy-rings", {**TOY, "train.checkpoint_every": 100})
    with pytest.raises(loop.TrainingDiverged, match="non-finite"):
        loop.train(config, tmp_path, progress=False)


def fixed_point_blocks(model: torch.nn.Module) -> list[InvertibleResidualBlock]:
    return [m for m in model.modules() if isinstance(m, InvertibleResidualBlock)]


def test_resflow_sample_that_does_not_converge_reports_its_residual() -> None:
    torch.manual_seed(0)
    model = build_model("resflow-toy-rings", model__blocks_per_scale=2)
    model.log_prob(torch.randn(8, 2))  # data-dependent ActNorm init
    randomize_parameters(model, seed=1)
    for block in fixed_point_blocks(model):
        block.inverse_max_iter = 2
    with pytest.warns(RuntimeWarning, match=r"did not converge in 2 iterations: max residual .* = \d"):
        model.eval().sample(16)
    for block in fixed_point_blocks(model):
        block.inverse_max_iter = 1000
    with torch.no_grad():  # with enough iterations the same inverse is exact again
        z = model.prior.sample(16)
        torch.testing.assert_close(model.flow(model.flow.inverse(z)[0])[0], z, atol=1e-4, rtol=0)


def test_block_inverse_that_does_not_converge_reports_its_residual() -> None:
    torch.manual_seed(0)
    block = InvertibleResidualBlock(mlp_residual_net(2, 16), (2,), logdet="exact", inverse_max_iter=1)
    randomize_parameters(block, seed=1)
    with pytest.warns(RuntimeWarning, match=r"did not converge in 1 iterations: max residual .*\(atol=1e-06"):
        block.eval().inverse(torch.randn(4, 2))
