"""Two-process DDP on the CPU (gloo): both ranks finish, rank 0 alone writes, ranks stay identical,
and a distributed run resumes bit-for-bit."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch
from tbevents import event_accumulator, scalar_steps

from invflow import run_files
from invflow.train.checkpoint import load_checkpoint_file, step_checkpoints
from invflow.train.metrics import read_metrics

WORKER = Path(__file__).with_name("ddp_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SMALL = ["model.blocks_per_scale=1", "model.hidden_channels=8", "data.image_size=8", "train.eval_batches=2",
         "train.log_every=2", "train.checkpoint_every=3", "data.batch_size=8", "train.n_samples_grid=4"]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)


def test_two_ranks_stay_identical_and_only_rank0_writes(mnist_dir, tmp_path) -> None:
    out, hashes = tmp_path / "run", tmp_path / "hashes"
    hashes.mkdir()
    done = torchrun(str(WORKER), "resflow-mnist-tiny", str(out), str(hashes), *SMALL, "train.steps=6",
                    f"data.data_dir={mnist_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (hashes / "rank0.txt").read_text(), (hashes / "rank1.txt").read_text()
    assert rank0 == rank1, "parameters or buffers (ActNorm init, power-iteration vectors) differ across ranks"
    steps = [p.name for p in step_checkpoints(out / run_files.CHECKPOINTS)]
    assert steps == [run_files.step_checkpoint(6), run_files.step_checkpoint(3)]
    records = read_metrics(out / run_files.METRICS)
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6]  # one writer, no duplicates
    test = [r for r in records if r["split"] == "test"][-1]
    assert test["count"] == 2 * 8  # the two eval batches were split across ranks and reduced
    assert len(load_checkpoint_file(out / run_files.LAST_PATH)["rng"]) == 2
    if importlib.util.find_spec("tensorboard") is not None:  # the optional extra; CI installs it
        assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1  # rank 0 alone writes events
        assert scalar_steps(event_accumulator(out / "tb"), "train/bpd") == [2, 4, 6]


def test_distributed_resume_is_bit_identical(tmp_path) -> None:
    common = [
        "-m",
        "invflow",
        "train",
        "glow-toy-rings",
        "--set",
        "model.steps_per_level=2",
        "--set",
        "model.hidden_channels=8",
        "--set",
        "data.batch_size=16",
        "--set",
        "train.eval_batches=1",
        "--set",
        "train.checkpoint_every=3",
        "--set",
        "train.deterministic=true",
    ]
    straight = torchrun(*common, "--set", "train.steps=8", "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = torchrun(*common, "--set", "train.steps=4", "--out", str(tmp_path / "resumed"))
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun(*common, "--set", "train.steps=8", "--out", str(tmp_path / "resumed"), "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "at step 4" in second.stdout
    want = load_checkpoint_file(tmp_path / "straight" / run_files.LAST_PATH)
    got = load_checkpoint_file(tmp_path / "resumed" / run_files.LAST_PATH)
    for key, value in want["model"].items():
        assert torch.equal(got["model"][key], value), key


def test_resume_with_another_process_count_is_refused(tmp_path) -> None:
    args = ["-m", "invflow", "train", "glow-toy-rings", "--set", "model.steps_per_level=1", "--set",
            "model.hidden_channels=8", "--set", "train.steps=2", "--set", "train.eval_batches=1",
            "--out", str(tmp_path)]
    assert torchrun(*args).returncode == 0
    single = subprocess.run(
        [sys.executable, *args[:-2], "--set", "train.steps=4", "--out", str(tmp_path), "--resume"],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert single.returncode == 2 and "written by 2 process(es), resumed with 1" in single.stderr
