"""Image folders with one sub-folder per class give class labels (``data.folder_labels``), for
conditional models; a folder laid out otherwise is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import invflow
from invflow.cli import main
from invflow.data import load_image_split


def class_folder(root: Path, classes: dict[str, int], size: int = 8) -> Path:
    """``root/<class>/<i>.png``: random images, class ``k``'s pixels around ``30 * k`` so classes differ."""
    rng = np.random.default_rng(0)
    for k, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.clip(rng.normal(30 * k + 40, 10, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


def conditional_folder_model(root: Path, **overrides: object) -> invflow.FlowModel:
    return invflow.build_model("glow-cifar10-tiny", data__dataset="folder", data__data_dir=str(root),
                               data__image_size=8, model__conditional=True, **overrides)


def test_labels_come_from_the_sorted_class_folders(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "f", {"cat": 10, "ant": 10, "bee": 10})
    train = load_image_split("folder", "train", str(root), folder_labels=True)
    test = load_image_split("folder", "test", str(root), folder_labels=True)
    assert train.num_classes == 3 and test.num_classes == 3
    # sorted relative paths: ant/… (class 0), bee/… (1), cat/… (2); the last tenth is the test split
    assert train.labels.tolist() == [0] * 10 + [1] * 10 + [2] * 7 and test.labels.tolist() == [2, 2, 2]
    assert load_image_split("folder", "test", str(root)).labels.tolist() == [0, 0, 0]  # without: one class


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("loose", "holds 1 image\\(s\\) outside any sub-folder \\(e.g. stray.png\\)"),
        ("one-class", "needs at least two class sub-folders"),
    ],
)
def test_a_folder_without_class_folders_is_refused_by_name(tmp_path: Path, layout: str, message: str) -> None:
    root = class_folder(tmp_path / "f", {"a": 10} if layout == "one-class" else {"a": 10, "b": 10})
    if layout == "loose":
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "stray.png")
    with pytest.raises(ValueError, match=message):
        load_image_split("folder", "train", str(root), folder_labels=True)
    with pytest.raises(ValueError, match=message):
        conditional_folder_model(root, data__folder_labels=True)


def test_a_conditional_model_of_a_labelled_folder_trains_and_samples_per_class(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "f", {"dark": 12, "light": 12})
    run = tmp_path / "run"
    settings = [
        "--set",
        "data.dataset=folder",
        "--set",
        "data.image_size=8",
        "--set",
        "data.folder_labels=true",
        "--set",
        "model.conditional=true",
        "--set",
        "model.steps_per_level=1",
        "--set",
        "model.hidden_channels=8",
        "--set",
        "train.steps=3",
        "--set",
        "data.batch_size=4",
        "--set",
        "train.eval_every=3",
        "--set",
        "train.eval_batches=1",
        "--set",
        "train.tensorboard=false",
        "--set",
        "train.n_samples_grid=4",
        "--set",
        "train.warmup_steps=1",
    ]
    assert main(["train", "glow-cifar10-tiny", "--out", str(run), "--data-dir", str(root), *settings]) == 0
    assert main(["sample", str(run), "--class", "1", "-o", str(tmp_path / "light.png")]) == 0
    assert invflow.load_checkpoint(run)[0].context_spec.num_classes == 2
    with pytest.raises(ValueError, match="an image folder has them with data.folder_labels: true"):
        conditional_folder_model(root)
