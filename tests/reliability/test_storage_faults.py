"""Storage faults (issue 17): damaged checkpoints are passed over out loud, a full disk ends a run
with one line after saving what it can, and a failed sample write only costs the picture."""
from __future__ import annotations

import errno
import fnmatch
import os
from pathlib import Path

import pytest
import torch

from invflow import run_files, storage
from invflow.cli import main
from invflow.models import load_config
from invflow.train import loop
from invflow.train.checkpoint import CheckpointFallbackWarning, load_checkpoint_file, step_checkpoints
from invflow.train.metrics import read_metrics

SMALL = {"model.steps_per_level": 2, "model.hidden_channels": 8, "data.batch_size": 16, "train.steps": 12,
         "train.checkpoint_every": 3, "train.eval_batches": 1, "train.log_every": 1, "data.toy_samples": 64,
         "train.keep_checkpoints": 2, "train.sample_every": 3, "train.n_samples_grid": 4}
REAL_WRITE = storage.write_bytes
CLI_SMALL = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]


def old_run_with_a_hard_linked_last_pt(tmp_path: Path) -> Path:
    """A finished run as earlier invflow wrote it (``last.pt`` a hard link to the newest step file),
    with that one inode damaged: both names are unreadable, ``step-00000009.pt`` is good."""
    run = tmp_path / "run"
    loop.train(load_config("glow-toy-rings", SMALL), run, progress=False)
    checkpoints = run / run_files.CHECKPOINTS
    newest, last = checkpoints / "step-00000012.pt", checkpoints / run_files.LAST_CHECKPOINT
    last.unlink()
    os.link(newest, last)
    newest.write_bytes(newest.read_bytes()[:-100])
    return run


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_eval_and_sample_announce_the_fallback_and_the_step_used(
    command: str, tmp_path: Path, capsys
) -> None:
    run = old_run_with_a_hard_linked_last_pt(tmp_path)
    capsys.readouterr()
    assert main([command, str(run)]) == 0
    out, err = capsys.readouterr()
    used = run / run_files.CHECKPOINTS / "step-00000009.pt"
    assert f"checkpoint: {used} (step 9, EMA weights)" in out
    warnings = [line for line in err.splitlines() if line.startswith("invflow: warning:")]
    assert len(warnings) == 2, err
    for line, bad in zip(warnings, ["last.pt", "step-00000012.pt"]):
        assert f"skipped {run / 'checkpoints' / bad}: checksum mismatch" in line
        assert f"using {used} (step 9)" in line


def test_resume_past_a_damaged_checkpoint_is_recorded_in_metrics(tmp_path: Path) -> None:
    run = old_run_with_a_hard_linked_last_pt(tmp_path)
    with pytest.warns(CheckpointFallbackWarning) as caught:
        result = loop.train(load_config("glow-toy-rings", {**SMALL, "train.steps": 15}), run, resume=True,
                            progress=False)
    assert result.step == 15 and len(result.checkpoint_fallbacks) == 2 == len(caught)
    events = [r for r in read_metrics(run / run_files.METRICS) if r.get("event") == "checkpoint_fallback"]
    assert len(events) == 1 and events[0]["step"] == 9 and events[0]["used"] == "step-00000009.pt"
    assert "step-00000012.pt: checksum mismatch" in events[0]["skipped"][1]


def full_disk(monkeypatch, pattern: str) -> list[str]:
    """Every write to a file whose name matches ``pattern`` writes half its bytes, then fails with
    ENOSPC (as a full disk does); returns the names of the files that failed."""
    real, failed = storage.write_bytes, []

    def write(f, data: bytes) -> None:
        name = Path(f.name).name
        if fnmatch.fnmatch(name, pattern):
            failed.append(name)
            real(f, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)

    monkeypatch.setattr(storage, "write_bytes", write)
    return failed


def leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.rglob(".*.tmp"))


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(run / run_files.LAST_PATH)["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_disk_during_a_sample_write_is_a_warning_and_training_goes_on(monkeypatch, tmp_path) -> None:
    failed = full_disk(monkeypatch, ".step-00000006.png.*")
    with pytest.warns(RuntimeWarning, match=r"no space left on device writing .*step-00000006.png \(.* free "
                                            r"there\); samples skipped, training goes on"):
        result = loop.train(load_config("glow-toy-rings", SMALL), tmp_path, progress=False)
    assert failed and result.step == 12
    assert not (tmp_path / run_files.SAMPLES / "step-00000006.png").exists() and leftovers(tmp_path) == []
    assert (tmp_path / run_files.SAMPLES / "step-00000009.png").is_file()


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_resume_works_once_space_returns(
        monkeypatch, tmp_path, capsys) -> None:
    reference = tmp_path / "reference"
    assert main(["train", "glow-toy-rings", *CLI_SMALL, "--out", str(reference)]) == 0
    run = tmp_path / "run"
    full_disk(monkeypatch, ".step-00000006.pt.*")
    capsys.readouterr()
    assert main(["train", "glow-toy-rings", *CLI_SMALL, "--out", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert (
        f"invflow: error: no space left on device writing {run / 'checkpoints' / 'step-00000006.pt'} (" in err
    )
    assert "step 6 was not saved, the older checkpoints are intact; free some space" in err
    assert leftovers(run) == [] and [p.name for p in step_checkpoints(run / run_files.CHECKPOINTS)] == [
        "step-00000003.pt"
    ]
    assert load_checkpoint_file(run / run_files.LAST_PATH)["step"] == 3

    full_disk(monkeypatch, "*")  # still full: --resume is one line too, and changes nothing
    assert main(["train", "glow-toy-rings", *CLI_SMALL, "--out", str(run), "--resume"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("invflow: error: no space left on device"), err
    assert leftovers(run) == [] and load_checkpoint_file(run / run_files.LAST_PATH)["step"] == 3

    monkeypatch.setattr(storage, "write_bytes", REAL_WRITE)  # space is back
    assert main(["train", "glow-toy-rings", *CLI_SMALL, "--out", str(run), "--resume"]) == 0
    assert same_weights(final_weights(run), final_weights(reference))


def test_a_full_disk_during_a_metrics_write_saves_the_state_first(monkeypatch, tmp_path, capsys) -> None:
    reference = tmp_path / "reference"
    assert main(["train", "glow-toy-rings", *CLI_SMALL, "--out", str(reference)]) == 0
    run = tmp_path / "run"
    real, calls = storage.write_bytes, []

    def write(f, data: bytes) -> None:  # the metrics line of step 5 finds the disk full
        if Path(f.name).name == "metrics.jsonl" and b'"step": 5,' in data:
            calls.append(data)
            real(f, data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)

    monkeypatch.setattr(storage, "write_bytes", write)
    capsys.readouterr()
    assert main(["train", "glow-toy-rings", *CLI_SMALL, "--out", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"writing {run / 'metrics.jsonl'} (" in err, err
    assert "the training state of step 5 was checkpointed first" in err
    assert load_checkpoint_file(run / run_files.LAST_PATH)["step"] == 5
    records = read_metrics(run / run_files.METRICS)  # no half line left behind
    assert max(r["step"] for r in records) == 4 and leftovers(run) == []

    monkeypatch.setattr(storage, "write_bytes", REAL_WRITE)  # space is back
    assert main(["train", "glow-toy-rings", *CLI_SMALL, "--out", str(run), "--resume"]) == 0
    assert same_weights(final_weights(run), final_weights(reference))



def test_a_metrics_line_cut_short_by_a_kill_is_dropped_on_resume(tmp_path) -> None:
    loop.train(load_config("glow-toy-rings", SMALL), tmp_path, progress=False)
    with (tmp_path / run_files.METRICS).open("a") as f:
        f.write('{"step": 13, "split": "tr')  # a kill in the middle of an append
    with pytest.warns(RuntimeWarning, match="dropping a line cut short"):
        loop.train(load_config("glow-toy-rings", {**SMALL, "train.steps": 15}), tmp_path, resume=True,
                   progress=False)
    assert max(r["step"] for r in read_metrics(tmp_path / run_files.METRICS)) == 15
