"""Reproducibility: same seed and preset → bit-identical parameters; ``invflow eval`` → the same bpd
for the same seed; the run directory records versions and the full resolved config."""
import json
from pathlib import Path

import pytest
import torch
import yaml

import invflow
from image_folders import random_image_folder
from invflow import run_files
from invflow.cli import main
from invflow.config import Config
from invflow.models import config_from_dict, load_config
from invflow.train import loop
from invflow.train.checkpoint import load_checkpoint_file

TOY = {
    "model.steps_per_level": 2,
    "model.hidden_channels": 8,
    "data.batch_size": 16,
    "train.steps": 8,
    "train.checkpoint_every": 4,
    "train.eval_batches": 1,
    "data.toy_samples": 64,
    "train.n_samples_grid": 4,
    "train.deterministic": True,
    "train.device": "cpu",
}
# Image data (uniform dequantization draws noise every step) from a folder of generated 8x8 PNGs.
IMAGES = {
    "data.dataset": "folder",
    "data.image_size": 8,
    "data.batch_size": 4,
    "model.levels": 2,
    "model.steps_per_level": 1,
    "model.hidden_channels": 8,
    "train.steps": 6,
    "train.checkpoint_every": 3,
    "train.eval_batches": 1,
    "train.n_samples_grid": 4,
    "train.deterministic": True,
    "train.device": "cpu",
}


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return random_image_folder(tmp_path / "images", 40)


def configs(image_folder: Path) -> dict[str, Config]:
    return {"toy": load_config("glow-toy-rings", TOY),
            "images": load_config("glow-mnist-tiny", {**IMAGES, "data.data_dir": str(image_folder)})}


def final_state(config: Config, out: Path) -> dict:
    loop.train(config, out, progress=False)
    return load_checkpoint_file(out / run_files.LAST_PATH)


@pytest.mark.parametrize("kind", ["toy", "images"])
def test_same_seed_gives_bit_identical_parameters(kind: str, image_folder: Path, tmp_path: Path) -> None:
    config = configs(image_folder)[kind]
    first, second = final_state(config, tmp_path / "a"), final_state(config, tmp_path / "b")
    for section in ("model", "ema"):
        for key, value in first[section].items():
            assert torch.equal(second[section][key], value), f"{section}.{key} differs between two runs"
    config.train.seed = 1
    other = final_state(config, tmp_path / "c")
    assert any(not torch.equal(other["model"][k], v) for k, v in first["model"].items()), (
        "the seed is ignored"
    )


def eval_line(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out.strip()


def test_eval_same_seed_same_bpd_other_seed_other_bpd(image_folder: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    loop.train(configs(image_folder)["images"], run, progress=False)
    argv = ["eval", str(run), "--data-dir", str(image_folder), "--device", "cpu"]
    first = eval_line([*argv, "--seed", "0"], capsys)
    assert "bpd" in first
    assert eval_line([*argv, "--seed", "0"], capsys) == first
    assert eval_line([*argv, "--seed", "1"], capsys) != first  # other dequantization noise


def test_run_directory_records_versions_and_resolved_config(tmp_path: Path) -> None:
    config = load_config("glow-toy-rings", TOY)
    loop.train(config, tmp_path, progress=False)
    env = json.loads((tmp_path / run_files.ENVIRONMENT).read_text())
    assert env["invflow"] == invflow.__version__ and env["torch"] == torch.__version__
    reloaded = config_from_dict(yaml.safe_load((tmp_path / run_files.CONFIG).read_text()))
    assert reloaded == config
    assert load_checkpoint_file(tmp_path / run_files.LAST_PATH)["config"] == config.to_dict()
