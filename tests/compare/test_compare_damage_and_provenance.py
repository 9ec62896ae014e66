"""``invflow compare`` with damaged runs, and where its numbers come from (issue 17)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from image_folders import random_image_folder
from invflow import run_files
from invflow.cli import main
from invflow.train.checkpoint import load_checkpoint_file

TOY = {
    "model.steps_per_level": 1,
    "model.hidden_channels": 4,
    "data.batch_size": 8,
    "data.toy_samples": 32,
    "train.checkpoint_every": 3,
    "train.eval_batches": 1,
    "train.n_samples_grid": 4,
    "train.keep_checkpoints": 1,
}
IMAGES = {"data.dataset": "folder", "data.image_size": 8, "data.batch_size": 4, "model.levels": 2,
          "model.steps_per_level": 1, "model.hidden_channels": 4, "train.checkpoint_every": 3,
          "train.eval_batches": 1, "train.n_samples_grid": 4}


def sets(overrides: dict) -> list[str]:
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]


def compare_toy(out: Path, *extra: str) -> list[str]:
    return [
        "compare",
        "glow-toy-rings",
        "--seeds",
        "1",
        "--steps",
        "6",
        "--out",
        str(out),
        *sets(TOY),
        *extra,
    ]


def damage_every_checkpoint(run: Path) -> None:
    """As issue 17 found it: ``last.pt`` a hard link to the only step file, and that inode damaged."""
    checkpoints = run / run_files.CHECKPOINTS
    (step,) = checkpoints.glob("step-*.pt")
    (checkpoints / run_files.LAST_CHECKPOINT).unlink()
    os.link(step, checkpoints / run_files.LAST_CHECKPOINT)
    step.write_bytes(step.read_bytes()[:-64])


def test_compare_moves_a_run_with_no_readable_checkpoint_aside_and_trains_it_again(tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    run = out / "runs" / "glow-toy-rings" / "seed-0"
    assert main(compare_toy(out)) == 0
    damage_every_checkpoint(run)

    capsys.readouterr()
    assert main(compare_toy(out, "--no-retrain-damaged")) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and f"run glow-toy-rings seed 0 in {run} has no readable checkpoint" in err
    )

    assert main(compare_toy(out)) == 0
    stdout = capsys.readouterr().out
    moved = out / "damaged" / "glow-toy-rings" / "seed-0"
    assert f"moved it to {moved} and training it again" in stdout
    moved_files = sorted(p.name for p in (moved / run_files.CHECKPOINTS).iterdir())
    assert moved_files == [run_files.LAST_CHECKPOINT, run_files.step_checkpoint(6)]
    assert load_checkpoint_file(run / run_files.LAST_PATH)["step"] == 6
    marker = json.loads((run / "compare-run.json").read_text())
    assert marker["finished"] and marker["damaged_run_moved_to"] == str(moved)
    assert "no readable checkpoint" in (out / "summary.md").read_text().split("## Checkpoint warnings")[1]


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return random_image_folder(tmp_path / "images", 20)


def test_compare_runs_record_their_data_directory_and_the_summary_its_provenance(
        image_folder, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(image_folder.parent)
    out = tmp_path / "cmp"
    argv = ["compare", "glow-mnist-tiny", "--seeds", "1", "--steps", "3", "--out", str(out),
            "--data-dir", image_folder.name, *sets(IMAGES)]
    assert main(argv) == 0
    run = out / "runs" / "glow-mnist-tiny" / "seed-0"
    assert yaml.safe_load((run / run_files.CONFIG).read_text())["data"]["data_dir"] == str(image_folder)
    assert load_checkpoint_file(run / run_files.LAST_PATH)["config"]["data"]["data_dir"] == str(
        image_folder
    )

    summary = (out / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| glow-mnist-tiny seed 0 |"))
    assert (
        f"{run / 'checkpoints' / 'step-00000003.pt'} | 3 | EMA | folder from {image_folder} | test | 2 |"
        in row
    )
    provenance = json.loads((out / "summary.json").read_text())["runs"][0]["provenance"]
    assert provenance["data_dir"] == str(image_folder) and provenance["torch"] and provenance["invflow"]

    monkeypatch.chdir(tmp_path)  # elsewhere, without --data-dir: the run knows its data
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    out_lines = capsys.readouterr().out.splitlines()
    assert out_lines[0] == f"checkpoint: {run / 'checkpoints' / 'last.pt'} (step 3, EMA weights)"
    assert out_lines[1] == f"data: folder test split from {image_folder}, 2 of 2 images"
    assert out_lines[2].startswith("versions: invflow ") and ", torch " in out_lines[2]
