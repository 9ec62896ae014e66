"""A comparison killed after its first run finished, then rerun, trains only the missing runs.

The kill is deterministic: the first run is finished by a one-seed comparison, then the two-seed
comparison kills itself with SIGKILL right after step 7 of the second run
(``INVFLOW_FAULT=after-step:7``; the finished first run is skipped and takes no step), so the
second run has exactly its step-5 checkpoint. No timer, so no dependence on machine load."""
import json
import os
import signal
import subprocess
import sys

from compare_args import fast_args

from invflow import run_files
from invflow.train.checkpoint import step_checkpoints

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STEPS = 30


def compare(mnist_dir, out, seeds: int = 2) -> list[str]:
    return [sys.executable, "-m", "invflow", "compare", "glow-mnist-tiny", "--seeds", str(seeds),
            *fast_args(mnist_dir, out, steps=STEPS, checkpoint_every=5)]


def finished(run_dir) -> bool:
    marker = run_dir / "compare-run.json"
    return marker.is_file() and json.loads(marker.read_text())["finished"]


def test_rerun_after_kill_finishes_only_missing_runs(mnist_dir, tmp_path) -> None:
    out = tmp_path / "cmp"
    first, second = (out / "runs" / "glow-mnist-tiny" / f"seed-{k}" for k in (0, 1))
    subprocess.run(compare(mnist_dir, out, seeds=1), env=ENV, check=True, capture_output=True)
    assert finished(first)
    killed = subprocess.run(compare(mnist_dir, out), env={**ENV, "INVFLOW_FAULT": "after-step:7"},
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [p.stem for p in step_checkpoints(second / run_files.CHECKPOINTS)] == ["step-00000005"]
    assert finished(first) and not finished(second)
    first_metrics = (first / run_files.METRICS).stat().st_mtime_ns
    first_checkpoint = (first / run_files.LAST_PATH).stat().st_mtime_ns

    rerun = subprocess.run(compare(mnist_dir, out), env=ENV, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "skipping finished run glow-mnist-tiny seed 0" in rerun.stdout
    assert f"resuming {second} from" in rerun.stdout, rerun.stdout
    assert (first / run_files.METRICS).stat().st_mtime_ns == first_metrics, "the finished run was retrained"
    assert (first / run_files.LAST_PATH).stat().st_mtime_ns == first_checkpoint
    assert finished(second) and json.loads((second / "compare-run.json").read_text())["step"] == STEPS
    summary = json.loads((out / "summary.json").read_text())
    assert [r["seeds"] for r in summary["presets"]] == [2]
