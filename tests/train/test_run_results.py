"""A run records its best and last test evaluation (results.json; Lu & Huang 2020, app. C.1 report
the best of the periodic evaluations), an image folder's held-out files (test_split.json; app. D),
and ``invflow sample`` defaults to the preset's sampling temperature."""
from __future__ import annotations

import json
from pathlib import Path

from image_folders import random_image_folder
from invflow import run_files
from invflow.cli import main
from invflow.models import load_config
from invflow.train import loop
from invflow.train.metrics import read_metrics

TOY = {"model.steps_per_level": 2, "model.hidden_channels": 8, "data.batch_size": 16, "train.steps": 9,
       "train.eval_every": 3, "train.eval_batches": 1, "data.toy_samples": 64, "train.n_samples_grid": 4,
       "train.sample_every": 100, "train.checkpoint_every": 100, "train.device": "cpu"}


def test_results_hold_the_best_and_the_last_test_evaluation(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = loop.train(load_config("glow-toy-rings", TOY), run, progress=False)
    tests = [r for r in read_metrics(run / run_files.METRICS) if r["split"] == "test"]
    assert [r["step"] for r in tests] == [3, 6, 9]
    summary = json.loads((run / run_files.RESULTS).read_text())
    best = min(tests, key=lambda r: r["bits"])
    assert summary["metric"] == "bits" and summary["evaluations"] == 3
    assert summary["best"] == {"step": best["step"], "value": best["bits"], "stderr": best["bits_stderr"]}
    assert summary["last"]["step"] == 9 and summary["last"]["value"] == tests[-1]["bits"]
    assert (result.best_test_value, result.best_test_step) == (best["bits"], best["step"])


def test_sample_uses_the_presets_temperature(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    loop.train(
        load_config("glow-toy-rings", {**TOY, "train.eval_every": 100, "train.sample_temperature": 0.7}),
        run,
        progress=False,
    )
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "a.png")]) == 0
    assert "(temperature 0.7)" in capsys.readouterr().out
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "b.png"), "--temperature", "1"]) == 0
    assert "(temperature 1)" in capsys.readouterr().out


def test_folder_run_records_its_random_held_out_files(tmp_path: Path) -> None:
    root = random_image_folder(tmp_path / "images", 40)
    config = load_config(
        "glow-mnist-tiny",
        {
            "data.dataset": "folder",
            "data.image_size": 8,
            "data.batch_size": 4,
            "data.data_dir": str(root),
            "data.folder_test_images": 6,
            "data.folder_split_seed": 5,
            "model.levels": 2,
            "model.steps_per_level": 1,
            "model.hidden_channels": 8,
            "train.steps": 2,
            "train.eval_batches": 1,
            "train.n_samples_grid": 4,
            "train.device": "cpu",
        },
    )
    loop.train(config, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / run_files.HELD_OUT).read_text())
    assert record["count"] == 6 and record["folder_split_seed"] == 5 and len(record["files"]) == 6
    assert "at random with seed 5" in record["rule"]
    assert record["files"] != [f"{i:02d}.png" for i in range(34, 40)]  # not the last sorted names


def test_results_when_no_evaluation_was_finite(tmp_path: Path) -> None:
    """A diverged run logs its non-finite evaluations as null: results.json says best is null."""
    from invflow.train.results import best_and_last

    metrics = tmp_path / run_files.METRICS
    metrics.write_text(
        '{"step": 5, "split": "test", "bits": null}\n{"step": 9, "split": "test", "bits": null}\n'
    )
    summary = best_and_last(metrics, "bits")
    assert summary["best"] is None and summary["last"] == {"step": 9, "value": None, "stderr": None}
