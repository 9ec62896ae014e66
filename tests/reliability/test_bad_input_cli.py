"""Bad input at the command line: one line on stderr starting ``invflow: error:``, exit code 2."""
from pathlib import Path

import pytest

from invflow.cli import main
from invflow.config import preset_names
from invflow.train.checkpoint import save_checkpoint

TINY = [
    "--set",
    "train.steps=3",
    "--set",
    "data.batch_size=8",
    "--set",
    "data.toy_samples=32",
    "--set",
    "train.eval_batches=1",
    "--set",
    "model.steps_per_level=1",
    "--set",
    "model.hidden_channels=4",
    "--set",
    "train.n_samples_grid=4",
]


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("invflow: error:"), err
    return err


@pytest.mark.parametrize("setting, message", [
    ("model.levels=two", "model.levels must be an integer, got 'two'"),
    ("train.steps=1.5", "train.steps must be an integer, got 1.5"),
    ("train.deterministic=maybe", "train.deterministic must be true or false, got 'maybe'"),
    ("model.hidden_channels=-8", "model.hidden_channels must be > 0, got -8"),
    ("data.image_size=-4", "data.image_size must be > 0, got -4"),
    ("train.lr=nan", "train.lr must be a finite number, got nan"),
    ("train.lr=.inf", "train.lr must be a finite number, got inf"),
    ("data.n_bits=9", r"data.n_bits must be an integer in [1, 8], got 9"),
    ("model.mixing=dense", "model.mixing must be one of '1x1', 'lu'"),
    ("data.dataset=imagenet16", "unknown data.dataset 'imagenet16'"),
    ("model.coeff=0.5", "unknown config key model.coeff"),  # glow has no coeff; resflow below
    ("modellevels=2", "must be section.key"),
    ("train.n_samples_grid=20000", "train.n_samples_grid must be <= 10000 (one PNG grid), got 20000"),
    ("train.checkpoint_minutes=0", "train.checkpoint_minutes must be > 0, got 0"),
    ("train.threads=0", "train.threads must be > 0, got 0"),
])
def test_invalid_set_values(setting: str, message: str, tmp_path: Path, capsys) -> None:
    err = one_line_error(
        ["train", "glow-toy-rings", "--set", setting, "--out", str(tmp_path / "run")], capsys
    )
    assert message in err


@pytest.mark.skipif("resflow-toy-rings" not in preset_names(), reason="no resflow presets yet")
@pytest.mark.parametrize("coeff", ["1.0", "1.5", "0"])
def test_resflow_coeff_must_keep_lipschitz_below_one(coeff: str, tmp_path: Path, capsys) -> None:
    err = one_line_error(["train", "resflow-toy-rings", "--set", f"model.coeff={coeff}",
                          "--out", str(tmp_path / "run")], capsys)
    assert "model.coeff must be" in err


@pytest.mark.parametrize("setting", ["model.n_dist_param=0", "model.n_dist_param=-2"])
def test_resflow_poisson_rate_must_be_positive(setting: str, tmp_path: Path, capsys) -> None:
    err = one_line_error(["train", "resflow-mnist-tiny", "--set", "model.n_dist=poisson", "--set", setting,
                          "--out", str(tmp_path / "run")], capsys)
    assert "n_dist_param" in err and "> 0" in err


def test_out_under_a_regular_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "somefile").write_text("not a directory")
    err = one_line_error(
        ["train", "glow-toy-rings", *TINY, "--out", str(tmp_path / "somefile" / "run")], capsys
    )
    assert "cannot create run directory" in err and "Not a directory" in err


def test_out_in_a_read_only_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    # Tests run as root, where chmod does not stop writes: simulate what a user without write access gets.
    def denied(self: Path, *args, **kwargs) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    err = one_line_error(["train", "glow-toy-rings", *TINY, "--out", str(tmp_path / "ro" / "run")], capsys)
    assert "cannot create run directory" in err and "Permission denied" in err


def test_out_that_exists_but_is_not_writable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setattr("invflow.train.run_dir.os.access", lambda path, mode: False)
    err = one_line_error(["train", "glow-toy-rings", *TINY, "--out", str(tmp_path / "run")], capsys)
    assert "is not writable" in err


def test_sample_output_under_a_regular_file(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "glow-toy-rings", *TINY, "--out", str(run)]) == 0
    (tmp_path / "somefile").write_text("")
    capsys.readouterr()
    err = one_line_error(["sample", str(run), "-o", str(tmp_path / "somefile" / "grid.png")], capsys)
    assert "cannot write samples to" in err


@pytest.fixture
def toy_run(tmp_path: Path) -> Path:
    run = tmp_path / "rings"
    assert main(["train", "glow-toy-rings", *TINY, "--out", str(run)]) == 0
    return run


def test_checkpoint_of_another_preset(toy_run: Path, capsys) -> None:
    capsys.readouterr()
    err = one_line_error(["train", "glow-toy-2moons", *TINY, "--out", str(toy_run), "--resume"], capsys)
    assert "checkpoint is from another model" in err and "data.dataset is 'rings' there, '2moons' here" in err


def test_existing_run_without_resume(toy_run: Path, capsys) -> None:
    capsys.readouterr()
    err = one_line_error(["train", "glow-toy-rings", *TINY, "--out", str(toy_run)], capsys)
    assert "already has checkpoints; pass --resume or another --out" in err


def test_checkpoint_of_another_format_version(tmp_path: Path, capsys) -> None:
    path = tmp_path / "old.pt"
    save_checkpoint({"step": 1}, path)
    path.write_bytes(path.read_bytes().replace(b"invflow-checkpoint 1 ", b"invflow-checkpoint 0 ", 1))
    err = one_line_error(["eval", str(path)], capsys)
    assert str(path) in err and "checkpoint format version 0, this invflow reads version 1" in err


def test_checkpoint_without_config(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bare.pt"
    save_checkpoint({"step": 1}, path)
    err = one_line_error(["eval", str(path)], capsys)
    assert "lacks its config or model weights" in err


def test_run_directory_without_checkpoint(tmp_path: Path, capsys) -> None:
    err = one_line_error(["eval", str(tmp_path)], capsys)
    assert "no checkpoint in run directory" in err


def test_diverged_run_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    from invflow.train import loop

    def diverge(*args, **kwargs):
        raise loop.TrainingDiverged("stopping: 21 non-finite losses or gradients (train.max_nonfinite=20)")

    monkeypatch.setattr(loop, "train", diverge)
    assert main(["train", "glow-toy-rings", "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "non-finite" in err


def test_corrupt_data_file_is_named(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02d}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    err = one_line_error(
        [
            "train",
            "glow-mnist-tiny",
            "--set",
            "data.dataset=folder",
            "--set",
            "data.image_size=8",
            "--data-dir",
            str(folder),
            "--out",
            str(tmp_path / "run"),
        ],
        capsys,
    )
    assert "cannot read image" in err and "00.png" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "RUN", "-n", "0"], "argument -n: must be >= 1, got 0"),
        (["sample", "RUN", "-n", "20000"], "argument -n: must be <= 10000 (one PNG grid), got 20000"),
        (
            ["sample", "RUN", "--temperature", "nan"],
            "argument --temperature: must be a finite number, got nan",
        ),
        (["sample", "RUN", "--temperature", "-1"], "argument --temperature: must be >= 0, got -1"),
        (
            ["compare", "glow-toy-rings", "--minutes", "nan"],
            "argument --minutes: must be a finite number, got nan",
        ),
        (["compare", "glow-toy-rings", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
        (["compare", "glow-toy-rings", "--seeds", "0"], "argument --seeds: must be >= 1, got 0"),
    ],
)
def test_bad_numeric_cli_arguments(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([a.replace("RUN", str(tmp_path)) for a in argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--pairs", "100000"], "--pairs 100000 x --steps 8 = 800000 images, more than one figure shows"),
        (["--steps", "100000"], "--pairs 4 x --steps 100000 = 400000 images, more than one figure shows"),
    ],
)
def test_interpolation_larger_than_a_figure_is_refused(toy_run: Path, tmp_path: Path, capsys, options,
                                                       message) -> None:
    err = one_line_error(["interpolate", str(toy_run), *options, "-o", str(tmp_path / "i.png")], capsys)
    assert message in err and not (tmp_path / "i.png").exists()


def test_an_integer_too_large_for_torch_names_its_key(tmp_path: Path, capsys) -> None:
    err = one_line_error(["train", "glow-toy-rings", "--out", str(tmp_path / "r"),
                          "--set", "train.seed=99999999999999999999"], capsys)
    assert "train.seed must be an integer in [-2^63, 2^63 - 1], got 99999999999999999999" in err


def test_more_threads_than_cores_are_clamped_with_a_warning() -> None:
    import os
    import warnings

    import torch

    from invflow.train.loop import intra_op_threads

    before = torch.get_num_threads()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with intra_op_threads(1000):
            assert torch.get_num_threads() == (os.cpu_count() or 1)
    assert torch.get_num_threads() == before
    assert any("train.threads=1000 is more than this machine's" in str(w.message) for w in caught)
