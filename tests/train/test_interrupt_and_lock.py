"""Preemption-safe, single-writer runs (issue 12 items 4-6): SIGINT/SIGTERM checkpoint the finished
step and exit 130/143 losing no step; a second writer is refused; a killed holder's lock does not
block ``--resume``; ``train.checkpoint_minutes``; ``--resume`` reuses the recorded data directory."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from invflow import run_files
from invflow.cli import main
from invflow.train import session
from invflow.train.checkpoint import load_checkpoint_file, step_checkpoints
from invflow.train.metrics import read_metrics

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TOY = [
    "--set",
    "model.steps_per_level=2",
    "--set",
    "model.hidden_channels=16",
    "--set",
    "data.toy_samples=256",
    "--set",
    "data.batch_size=32",
    "--set",
    "train.eval_batches=1",
    "--set",
    "train.log_every=1",
    "--set",
    "train.deterministic=true",
    "--set",
    "train.n_samples_grid=4",
    "--set",
    "train.eval_every=100000",
    "--set",
    "train.sample_every=100000",
    "--set",
    "train.checkpoint_every=100000",
]


def command(out: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "invflow", "train", "glow-toy-rings", "--out", str(out), *TOY,
            "--set", f"train.steps={steps}", *extra]


def wait_until(predicate, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    """Poll for a condition while ``proc`` runs (a long run: no race with the process finishing)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the process exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def logged_steps(run: Path) -> list[int]:
    path = run / run_files.METRICS
    return [r["step"] for r in read_metrics(path) if r["split"] == "train"] if path.is_file() else []


def interrupt(run: Path, sig: int, code: int) -> tuple[int, str]:
    """Train, send ``sig`` after 15 logged steps; check exit ``code`` and that no finished step was lost."""
    proc = subprocess.Popen(
        command(run, 1_000_000), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_until(lambda: len(logged_steps(run)) >= 15, proc, "15 logged steps")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    saved = load_checkpoint_file(run / run_files.LAST_PATH)
    done = max(logged_steps(run))  # every finished step is logged (log_every=1)
    assert saved["step"] == done >= 15, "steps were lost"
    assert f"continue from step {done}" in err and err.strip().splitlines()[-1].startswith(
        "invflow: interrupted by"
    )
    return done, err


def test_sigint_checkpoints_the_finished_step_and_exits_130(tmp_path: Path) -> None:
    interrupt(tmp_path / "run", signal.SIGINT, 130)


def test_sigterm_checkpoints_the_finished_step_and_resume_loses_none(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done, err = interrupt(run, signal.SIGTERM, 143)
    assert "SIGTERM" in err
    # Resume for 3 more steps; the result is bit-identical to a run that was never interrupted.
    resumed = subprocess.run(command(run, done + 3, "--resume"), env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {done}" in resumed.stdout
    reference = tmp_path / "reference"
    subprocess.run(command(reference, done + 3), env=ENV, check=True, capture_output=True)
    want = load_checkpoint_file(reference / run_files.LAST_PATH)
    got = load_checkpoint_file(run / run_files.LAST_PATH)
    assert got["step"] == want["step"] == done + 3
    for key, value in want["model"].items():
        assert torch.equal(got["model"][key], value), key


def test_second_writer_is_refused_and_a_killed_holder_does_not_block_resume(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(command(run, 1_000_000, "--set", "train.checkpoint_every=5"), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: bool(step_checkpoints(run / run_files.CHECKPOINTS)), proc, "a first checkpoint")
        assert (
            main(["train", "glow-toy-rings", "--out", str(run), "--resume", *TOY, "--set", "train.steps=3"])
            == 2
        )
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"is in use by process {proc.pid}" in err, err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = step_checkpoints(run / run_files.CHECKPOINTS)[0]
    step = load_checkpoint_file(resumed)["step"]
    assert (
        main(
            [
                "train",
                "glow-toy-rings",
                "--out",
                str(run),
                "--resume",
                *TOY,
                "--set",
                f"train.steps={step + 2}",
            ]
        )
        == 0
    )


def test_checkpoint_minutes_writes_on_the_wall_clock(tmp_path: Path, monkeypatch) -> None:
    ticks = iter(range(0, 10_000, 30))  # a clock that advances 30 s per reading
    monkeypatch.setattr(session, "_clock", lambda: next(ticks))
    run = tmp_path / "run"
    assert main(["train", "glow-toy-rings", "--out", str(run), *TOY, "--set", "train.steps=5",
                 "--set", "train.checkpoint_minutes=1", "--set", "train.keep_checkpoints=10"]) == 0
    steps = sorted(load_checkpoint_file(p)["step"] for p in step_checkpoints(run / run_files.CHECKPOINTS))
    assert steps == [2, 4, 5]  # due every 60 s = every second step, plus the final checkpoint


def test_resume_reuses_the_recorded_data_dir(mnist_dir, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("INVFLOW_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("INVFLOW_DATA_MIRROR", "http://127.0.0.1:9/")  # nothing to download from
    tiny = [
        "--set",
        "model.hidden_channels=4",
        "--set",
        "model.steps_per_level=1",
        "--set",
        "train.eval_batches=1",
        "--set",
        "data.batch_size=8",
        "--set",
        "train.n_samples_grid=4",
        "--set",
        "data.image_size=8",
    ]
    run = tmp_path / "run"
    assert main(["train", "glow-mnist-tiny", "--data-dir", str(mnist_dir), "--out", str(run), *tiny,
                 "--set", "train.steps=2"]) == 0
    assert (
        main(["train", "glow-mnist-tiny", "--out", str(run), "--resume", *tiny, "--set", "train.steps=4"])
        == 0
    )
    out = capsys.readouterr().out
    # the run records the directory resolved (../shared may be a link to the data)
    assert f"using the run's recorded data directory {mnist_dir.resolve()}" in out
    assert "finished glow-mnist-tiny at step 4" in out
