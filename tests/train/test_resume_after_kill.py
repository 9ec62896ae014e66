"""A training process killed mid-run and resumed ends with the same parameters as an uninterrupted run.

The process kills itself with SIGKILL right after step 13 (``INVFLOW_FAULT=after-step:13``), not on
a timer, so the test does not depend on machine load: its last checkpoint is always step 10."""
import os
import signal
import subprocess
import sys

import pytest
import torch

from invflow import run_files
from invflow.train.checkpoint import load_checkpoint_file, step_checkpoints
from invflow.train.metrics import read_metrics

STEPS = 40


def command(mnist_dir, out, resume=False, preset="glow-mnist-tiny") -> list[str]:
    args = [
        sys.executable,
        "-m",
        "invflow",
        "train",
        preset,
        "--data-dir",
        str(mnist_dir),
        "--out",
        str(out),
        "--set",
        "model.hidden_channels=16",
        "--set",
        "model.steps_per_level=2",
        "--set",
        f"train.steps={STEPS}",
        "--set",
        "train.checkpoint_every=5",
        "--set",
        "train.eval_every=1000",
        "--set",
        "train.sample_every=1000",
        "--set",
        "train.eval_batches=1",
        "--set",
        "train.deterministic=true",
        "--set",
        "train.log_every=5",
    ]
    return args + (["--resume"] if resume else [])


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# the plain preset, a class-conditional one (labels ride with the batches) and a toy whose context
# vectors are drawn with the data
@pytest.mark.parametrize("preset", ["glow-mnist-tiny", "glow-mnist-cond-tiny", "glow-toy-2moons-rotated"])
def test_killed_run_resumes_bit_identically(mnist_dir, tmp_path, preset: str) -> None:
    reference = tmp_path / "reference"
    subprocess.run(command(mnist_dir, reference, preset=preset), check=True, env=ENV, capture_output=True)

    run = tmp_path / "killed"
    killed = subprocess.run(command(mnist_dir, run, preset=preset),
                            env={**ENV, "INVFLOW_FAULT": "after-step:13"}, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    killed_at = load_checkpoint_file(run / run_files.LAST_PATH)["step"]
    assert killed_at == 10  # checkpoint_every=5; steps 11-13 were lost with the process
    assert max(int(p.stem.split("-")[1]) for p in step_checkpoints(run / run_files.CHECKPOINTS)) == 10

    resumed = subprocess.run(command(mnist_dir, run, resume=True, preset=preset), env=ENV,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {killed_at}" in resumed.stdout

    want = load_checkpoint_file(reference / run_files.LAST_PATH)
    got = load_checkpoint_file(run / run_files.LAST_PATH)
    assert got["step"] == want["step"] == STEPS
    for section in ("model", "ema"):
        for key, value in want[section].items():
            assert torch.equal(got[section][key], value), f"{section}.{key} differs after resume"
    steps = [r["step"] for r in read_metrics(run / run_files.METRICS) if r["split"] == "train"]
    assert steps == sorted(set(steps)), "metrics.jsonl repeats steps after resume"
