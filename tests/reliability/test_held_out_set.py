"""An image-folder run's held-out set is part of the run (issue 24, item 2): later commands use
exactly the recorded files, refuse by name when one is missing, changed or copied into the
training files, and never rewrite the record."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_folders import random_image_folder
from invflow import run_files
from invflow.cli import main
from invflow.models import load_config
from invflow.train import loop

FOLDER_RUN = {"data.dataset": "folder", "data.image_size": 8, "data.batch_size": 4,
              "data.folder_test_images": 6, "data.folder_split_seed": 5, "model.levels": 2,
              "model.steps_per_level": 1, "model.hidden_channels": 8, "train.eval_batches": 2,
              "train.n_samples_grid": 4, "train.device": "cpu", "train.steps": 2, "train.checkpoint_every": 2}


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path, dict]:
    images = random_image_folder(tmp_path / "images", 40)
    config = {**FOLDER_RUN, "data.data_dir": str(images)}
    loop.train(load_config("glow-mnist-tiny", config), tmp_path / "run", progress=False)
    return tmp_path / "run", images, config


def _resume(run: Path, config: dict, steps: int = 4):
    return loop.train(load_config("glow-mnist-tiny", {**config, "train.steps": steps}), run, resume=True,
                      progress=False)


def _eval(run: Path, capsys) -> tuple[int, str]:
    code = main(["eval", str(run), "--batches", "2"])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_record_names_and_hashes_the_held_out_files(run) -> None:
    root, images, _ = run
    record = json.loads((root / run_files.HELD_OUT).read_text())
    assert record["format"] == 2 and record["count"] == 6 and len(record["sha256"]) == 6
    assert all(len(h) == 64 for h in record["sha256"])


def test_a_renamed_held_out_file_is_refused_by_eval_and_resume_and_the_record_stays(run, capsys) -> None:
    root, images, config = run
    before = (root / run_files.HELD_OUT).read_bytes()
    held = json.loads(before)["files"][0]
    (images / held).rename(images / f"renamed_{held}")
    code, out = _eval(root, capsys)
    assert code != 0 and f"missing from {images}: {held}" in out
    with pytest.raises(ValueError, match=f"missing from .*{held}"):
        _resume(root, config)
    assert (root / run_files.HELD_OUT).read_bytes() == before


def test_a_changed_held_out_file_is_refused(run, capsys) -> None:
    root, images, _ = run
    held = json.loads((root / run_files.HELD_OUT).read_text())["files"][2]
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(images / held)
    code, out = _eval(root, capsys)
    assert code != 0 and "changed since they were recorded (SHA-256)" in out and held in out


def test_a_copy_of_a_held_out_file_among_the_training_files_is_refused_on_resume(run) -> None:
    root, images, config = run
    held = json.loads((root / run_files.HELD_OUT).read_text())["files"][1]
    shutil.copy(images / held, images / "zz_copy.png")
    with pytest.raises(ValueError, match=f"copies of held-out files: zz_copy.png \\(= {held}\\)"):
        _resume(root, config)


def test_new_training_images_leave_the_test_set_exactly_as_recorded(run, capsys) -> None:
    root, images, config = run
    code, first = _eval(root, capsys)
    assert code == 0
    rng = np.random.default_rng(1)
    for i in range(12):  # new files that sort among the old ones: the rule would now pick others
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(images / f"{i:02d}b.png")
    assert _resume(root, config).step == 4
    record = json.loads((root / run_files.HELD_OUT).read_text())
    assert record["count"] == 6
    code, second = _eval(root, capsys)
    assert code == 0 and "6 of 6" in _line(second, "data:"), second
    assert _line(first, "data:") == _line(second, "data:")


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


@pytest.mark.parametrize(("content", "message"), [
    ('{"format": 3, "files": ["a.png"], "sha256": ["0"]}', "written by a newer invflow \\(format 3"),
    ('{"format": 2, "files": ["a.png"', "cannot be read"),
    ('[1, 2]', "not a record of held-out files"),
])
def test_a_record_this_version_cannot_read_is_refused_never_replaced(run, capsys, content: str,
                                                                     message: str) -> None:
    root, _, config = run
    (root / run_files.HELD_OUT).write_text(content)
    code, out = _eval(root, capsys)
    assert code != 0 and "test_split.json" in out
    with pytest.raises(ValueError, match=message):
        _resume(root, config)
    assert (root / run_files.HELD_OUT).read_text() == content


def test_a_record_of_0_2_0_without_hashes_keeps_its_files_and_says_contents_are_unchecked(run) -> None:
    root, _, config = run
    record = json.loads((root / run_files.HELD_OUT).read_text())
    del record["sha256"], record["format"]
    (root / run_files.HELD_OUT).write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="recorded without content hashes"):
        assert _resume(root, config).step == 4
    assert "sha256" not in json.loads((root / run_files.HELD_OUT).read_text())
