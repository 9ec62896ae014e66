"""Every preset, whatever its model family, trains with a learning-rate warm-up by default, except
those that copy a paper's script which has none, and the loop ramps the rate linearly over
``train.warmup_steps``."""
import pytest

import invflow
from invflow import run_files
from invflow.config import TrainConfig, preset_names
from invflow.train.loop import train
from invflow.train.metrics import read_metrics

# Presets that reproduce a paper's own training script, which warms up not at all (Chen et al. 2019,
# app. D: the paper's train_toy.py has no warm-up).
AS_THE_PAPER = {"resflow-toy-checkerboard-paper-p2", "resflow-toy-checkerboard-paper-pinf"}


def test_default_and_every_preset_warm_up() -> None:
    assert TrainConfig().warmup_steps == 100
    for name in preset_names():
        config = invflow.load_config(name)
        if name in AS_THE_PAPER:
            assert config.train.warmup_steps == 0, name
            continue
        assert config.train.warmup_steps > 0, f"{name} ({config.family} family) trains without a warm-up"


def test_loop_ramps_the_learning_rate(tmp_path) -> None:
    config = invflow.load_config("glow-toy-checkerboard", {
        "train.steps": 8, "train.warmup_steps": 4, "train.log_every": 1, "train.lr": 1e-3,
        "train.eval_every": 100, "train.eval_batches": 1, "train.sample_every": 100,
        "model.steps_per_level": 1, "model.hidden_channels": 8, "data.toy_samples": 512})
    train(config, tmp_path / "run", progress=False)
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "run" / run_files.METRICS) if "lr" in r}
    # after s optimizer steps the rate is lr · min(1, (s + 1) / warmup_steps)
    assert [lrs[s] for s in range(1, 9)] == pytest.approx([5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
