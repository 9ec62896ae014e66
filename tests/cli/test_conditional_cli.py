"""Conditional runs on the command line: `sample --class / --classes all / --context`, eval's
conditional bits and generative-classifier accuracy, and every context option that does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from invflow import run_files
from invflow.cli import main
from invflow.viz.grids import LABEL_WIDTH

TINY = [
    "--set",
    "train.steps=4",
    "--set",
    "train.eval_every=4",
    "--set",
    "train.eval_batches=1",
    "--set",
    "train.n_samples_grid=4",
    "--set",
    "train.log_every=1",
    "--set",
    "train.tensorboard=false",
    "--set",
    "train.warmup_steps=1",
    "--set",
    "train.checkpoint_every=4",
    "--set",
    "train.sample_every=4",
]
TOY = ["--set", "data.toy_samples=64", "--set", "data.batch_size=32", "--set", "model.hidden_channels=8"]


def train(tmp_path: Path, preset: str, *extra: str) -> Path:
    out = tmp_path / preset
    assert main(["train", preset, "--out", str(out), *TINY, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def class_toy(tmp_path_factory) -> Path:
    return train(
        tmp_path_factory.mktemp("runs"),
        "resflow-toy-8gaussians-class",
        *TOY,
        "--set",
        "model.blocks_per_scale=2",
    )


@pytest.fixture(scope="module")
def vector_toy(tmp_path_factory) -> Path:
    return train(
        tmp_path_factory.mktemp("runs"), "glow-toy-2moons-rotated", *TOY, "--set", "model.steps_per_level=2"
    )


def test_class_toy_samples_one_class_or_every_class_and_eval_reports_the_classifier(
    class_toy: Path, tmp_path: Path, capsys
) -> None:
    assert (class_toy / run_files.SAMPLES / "final.png").is_file()
    one, every = tmp_path / "one.png", tmp_path / "all.png"
    assert main(["sample", str(class_toy), "--class", "3", "-o", str(one)]) == 0
    assert main(["sample", str(class_toy), "--classes", "all", "-o", str(every)]) == 0
    # one row of density panels for class 3, eight rows (one per class) for --classes all
    assert Image.open(every).height > 4 * Image.open(one).height
    capsys.readouterr()
    assert main(["eval", str(class_toy), "--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert "conditional: bits is -log p(x | y) given each example's label" in out
    assert "generative classifier argmax_y log p(x | y) (uniform p(y)): accuracy" in out


def test_vector_toy_samples_a_given_context(vector_toy: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "quarter.png"
    assert main(["sample", str(vector_toy), "--context", "0.0,1.0", "-o", str(png)]) == 0
    assert png.is_file()
    capsys.readouterr()
    assert main(["eval", str(vector_toy), "--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert "given each example's context" in out and "generative classifier" not in out


@pytest.mark.parametrize(
    ("run", "options", "message"),
    [
        ("class", ["--class", "8"], "--class 8 is out of range: this model has classes 0-7"),
        ("class", ["--class", "-1"], "--class -1 is out of range"),
        ("class", ["--context", "0.5,1.0"], "conditioned on class labels 0-7: use --class K"),
        ("class", ["--class", "1", "--classes", "all"], "give one of --class, --classes and --context"),
        ("vector", ["--class", "1"], "conditioned on vectors of width 2: use --context"),
        ("vector", ["--context", "0.5"], "--context needs 2 comma-separated numbers for this model, got 1"),
        ("vector", ["--context", "0.5,x"], "--context must be 2 comma-separated numbers, got '0.5,x'"),
        ("vector", ["--context", "nan,1"], "--context must be finite numbers"),
    ],
)
def test_bad_context_options_are_one_line_errors(
    class_toy: Path, vector_toy: Path, tmp_path: Path, capsys, run: str, options: list[str], message: str
) -> None:
    target = class_toy if run == "class" else vector_toy
    assert main(["sample", str(target), *options, "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()


def test_context_options_on_an_unconditional_run_are_refused(tmp_path: Path, capsys) -> None:
    run = train(tmp_path, "glow-toy-rings", *TOY, "--set", "model.steps_per_level=2")
    capsys.readouterr()
    assert main(["sample", str(run), "--class", "1", "-o", str(tmp_path / "x.png")]) == 2
    assert "--class needs a conditional model; this run's model is unconditional" in capsys.readouterr().err


def test_class_conditional_mnist_grid_has_one_labelled_row_per_digit(mnist_dir: Path, tmp_path: Path) -> None:
    run = train(
        tmp_path,
        "glow-mnist-cond-tiny",
        "--data-dir",
        str(mnist_dir),
        "--set",
        "data.batch_size=8",
        "--set",
        "model.steps_per_level=1",
        "--set",
        "model.hidden_channels=8",
        "--set",
        "data.image_size=8",
    )
    png = tmp_path / "grid.png"
    assert main(["sample", str(run), "-n", "30", "--classes", "all", "-o", str(png)]) == 0
    image = Image.open(png)
    tile = 8 + 2  # 8x8 digits and 2 pixels of padding
    assert image.width == LABEL_WIDTH + 3 * tile + 2 and image.height == 10 * tile + 2


def test_reconstruct_and_interpolate_use_each_examples_label(class_toy: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["reconstruct", str(class_toy), "-n", "8", "-o", str(tmp_path / "r.png")]) == 0
    error = float(capsys.readouterr().out.split("max |x - f^-1(f(x))| = ")[1].split()[0])
    assert error < 1e-4
    assert (
        main(["interpolate", str(class_toy), "--class", "3", "--pairs", "2", "-o", str(tmp_path / "i.png")])
        == 0
    )
    assert (
        main(
            ["interpolate", str(class_toy), "--labels", "3,5", "--pairs", "2", "-o", str(tmp_path / "l.png")]
        )
        == 0
    )
    assert "of class 3 decoded from label 3 to 5" in capsys.readouterr().out


def test_interpolation_ends_decode_to_the_examples_under_their_labels(class_toy: Path) -> None:
    from invflow.api import load_checkpoint
    from invflow.latent import held_out_examples, interpolate

    model, config = load_checkpoint(class_toy)
    x, labels = held_out_examples(config, 4)
    result = interpolate(model, x[:2], x[2:], 3, labels[:2], labels[2:])
    assert (result.paths[:, 0] - x[:2]).abs().max() < 1e-4 and (
        result.paths[:, -1] - x[2:]
    ).abs().max() < 1e-4
    morph = interpolate(
        model, x[:2], x[:2], 3, labels[:2], labels[:2], decode_contexts=(labels[:2], (labels[:2] + 1) % 8)
    )
    assert (morph.paths[:, 0] - x[:2]).abs().max() < 1e-4  # t = 0: its own label, itself
    assert (morph.paths[:, -1] - x[:2]).abs().max() > 1e-3  # t = 1: another label, another point


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--labels", "3,9"], "class label 9 is out of range"),
        (["--labels", "3"], "--labels must be two class labels A,B, got '3'"),
        (["--class", "8"], "--class 8 is out of range: this model has classes 0-7"),
    ],
)
def test_bad_interpolation_labels_are_one_line_errors(
    class_toy: Path, tmp_path: Path, capsys, options, message
) -> None:
    assert main(["interpolate", str(class_toy), *options, "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_compare_trains_and_times_a_vector_conditional_preset(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                "glow-toy-2moons-rotated",
                "--seeds",
                "1",
                "--steps",
                "3",
                "--out",
                str(out),
                "--set",
                "data.toy_samples=64",
                "--set",
                "model.hidden_channels=8",
            ]
        )
        == 0
    )
    assert "glow-toy-2moons-rotated" in (out / "summary.md").read_text()
