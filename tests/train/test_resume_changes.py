"""What ``--resume`` may change in ``train``: the learning-rate schedule is applied from the resumed
step and recorded in ``changes.jsonl`` (before, a new ``train.lr`` was written to config.yaml and
silently not used); a change that would make another run is refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from invflow import run_files
from invflow.train.metrics import read_metrics

BASE = [
    "--set",
    "train.steps=12",
    "--set",
    "train.checkpoint_every=4",
    "--set",
    "train.eval_every=1000",
    "--set",
    "train.sample_every=1000",
    "--set",
    "train.log_every=1",
    "--set",
    "train.tensorboard=false",
    "--set",
    "data.toy_samples=64",
    "--set",
    "model.hidden_channels=8",
    "--set",
    "model.steps_per_level=2",
    "--set",
    "train.warmup_steps=2",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train(out: Path, *extra: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**ENV, "INVFLOW_FAULT": fault} if fault else ENV
    return subprocess.run(
        [sys.executable, "-m", "invflow", "train", "glow-toy-rings", "--out", str(out), *BASE, *extra],
        env=env,
        capture_output=True,
        text=True,
    )


def logged_lr(run: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in read_metrics(run / run_files.METRICS) if r["split"] == "train"}


def test_a_new_learning_rate_on_resume_is_applied_from_the_resumed_step_and_recorded(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train(run, fault="after-step:7").returncode != 0  # killed; last checkpoint at step 4
    resumed = train(run, "--resume", "--set", "train.lr=0.5")
    assert resumed.returncode == 0, resumed.stderr
    assert "changed from step 4: train.lr 0.001 -> 0.5" in resumed.stdout
    lr = logged_lr(run)
    assert lr[3] == pytest.approx(1e-3) and lr[5] == pytest.approx(0.5) and lr[12] == pytest.approx(0.5)
    changes = [json.loads(line) for line in (run / run_files.CHANGES).read_text().splitlines()]
    assert changes == [{"step": 4, "key": "train.lr", "from": 0.001, "to": 0.5}]
    assert "lr: 0.5" in (run / run_files.CONFIG).read_text()


def test_an_unchanged_resume_records_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train(run, fault="after-step:7").returncode != 0
    assert train(run, "--resume").returncode == 0
    assert not (run / run_files.CHANGES).exists()


@pytest.mark.parametrize("change", ["train.seed=3", "train.ema_decay=0.5", "train.deterministic=true"])
def test_a_change_that_makes_another_run_is_refused_by_name(tmp_path: Path, change: str) -> None:
    run = tmp_path / "run"
    assert train(run, fault="after-step:7").returncode != 0
    refused = train(run, "--resume", "--set", change)
    assert refused.returncode == 2
    key = change.split("=")[0]
    assert f"--resume cannot change {key}" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
