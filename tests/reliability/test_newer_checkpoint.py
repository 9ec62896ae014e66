"""A checkpoint written by a newer invflow is not damaged (issue 24, "a run is one identity"):
every command stops and says so, never falls back to an older checkpoint and never overwrites it."""
from __future__ import annotations

from pathlib import Path

import pytest

from invflow import run_files
from invflow.cli import main
from invflow.models import load_config
from invflow.train import loop
from invflow.train.checkpoint import NewerCheckpointError

TOY = {"model.hidden_channels": 8, "data.batch_size": 16, "data.toy_samples": 64, "train.eval_batches": 1,
       "train.n_samples_grid": 4, "train.checkpoint_every": 2, "train.device": "cpu"}


def test_a_newer_last_checkpoint_stops_resume_and_eval_and_stays_untouched(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    loop.train(load_config("glow-toy-rings", {**TOY, "train.steps": 4}), run, progress=False)
    last = run / run_files.LAST_PATH
    header, _, payload = last.read_bytes().partition(b"\n")
    magic, _, digest = header.split(b" ")
    last.write_bytes(b" ".join([magic, b"2", digest]) + b"\n" + payload)
    before = {p.name: p.read_bytes() for p in (run / run_files.CHECKPOINTS).iterdir()}
    assert len(before) >= 2  # an older step checkpoint is there to fall back to, and must not be used
    with pytest.raises(NewerCheckpointError, match="written by a newer invflow \\(checkpoint format 2"):
        loop.train(load_config("glow-toy-rings", {**TOY, "train.steps": 6}), run, resume=True, progress=False)
    assert main(["eval", str(run)]) == 2
    assert "written by a newer invflow" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (run / run_files.CHECKPOINTS).iterdir()} == before


def test_a_checkpoint_copied_in_from_another_run_is_refused_by_name(tmp_path: Path, capsys) -> None:
    config = load_config("glow-toy-rings", {**TOY, "train.steps": 2})
    loop.train(config, tmp_path / "mine", progress=False)
    loop.train(config, tmp_path / "other", progress=False)
    foreign = tmp_path / "mine" / run_files.LAST_PATH
    (tmp_path / "other" / run_files.LAST_PATH).replace(foreign)  # over mine: the one a resume reads
    with pytest.raises(ValueError, match="last.pt belongs to another run"):
        loop.train(load_config("glow-toy-rings", {**TOY, "train.steps": 6}), tmp_path / "mine", resume=True,
                   progress=False)
    assert main(["eval", str(tmp_path / "mine")]) == 2
    assert "belongs to another run" in capsys.readouterr().err
    assert (tmp_path / "mine" / run_files.IDENTITY).is_file() and foreign.is_file()
