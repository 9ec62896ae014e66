"""A training process killed mid-run and resumed ends with the same parameters as an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import torch

from invflow.train.checkpoint import load_checkpoint_file, step_checkpoints
from invflow.train.metrics import read_metrics

STEPS = 40


def command(mnist_dir, out, resume=False) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "invflow",
        "train",
        "glow-mnist-tiny",
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


def test_killed_run_resumes_bit_identically(mnist_dir, tmp_path) -> None:
    reference = tmp_path / "reference"
    subprocess.run(command(mnist_dir, reference), check=True, env=ENV, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        command(mnist_dir, run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(
        int(p.stem.split("-")[1]) >= 10 for p in step_checkpoints(run / "checkpoints")
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = load_checkpoint_file(run / "checkpoints" / "last.pt")["step"]
    assert 10 <= killed_at < STEPS

    resumed = subprocess.run(command(mnist_dir, run, resume=True), env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {killed_at}" in resumed.stdout

    want = load_checkpoint_file(reference / "checkpoints" / "last.pt")
    got = load_checkpoint_file(run / "checkpoints" / "last.pt")
    assert got["step"] == want["step"] == STEPS
    for section in ("model", "ema"):
        for key, value in want[section].items():
            assert torch.equal(got[section][key], value), f"{section}.{key} differs after resume"
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    assert steps == sorted(set(steps)), "metrics.jsonl repeats steps after resume"
