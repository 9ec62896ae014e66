"""CLI errors a user can fix: one line on stderr, exit code 2, no traceback."""
import pytest

from invflow import run_files
from invflow.cli import main


@pytest.mark.parametrize("argv, message", [
    (["train", "glow-mnsit"], "unknown preset 'glow-mnsit'"),
    (["train", "glow-toy-rings", "--set", "model.levls=2"], "unknown config key model.levls"),
    (["train", "glow-toy-rings", "--set", "train.lr=fast"], "train.lr must be a number"),
    (["train", "glow-toy-rings", "--set", "data.batch_size=-1"], "data.batch_size must be > 0"),
    (["train", "glow-toy-rings", "--set", "trainlr"], "section.key=value"),
    (["train", "missing.yaml"], "config file not found"),
    (["eval", "no/such/run"], "checkpoint not found"),
    (["sample", "no/such/run"], "checkpoint not found"),
])
def test_errors_print_one_line_and_exit_2(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("invflow: error:")
    assert message in err


def test_missing_mnist_files_are_one_line(tmp_path, capsys) -> None:
    argv = ["train", "glow-mnist-tiny", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train-images-idx3-ubyte.gz" in err


def test_corrupt_checkpoint_is_named(tmp_path, capsys) -> None:
    bad = tmp_path / run_files.LAST_CHECKPOINT
    bad.write_bytes(b"not a checkpoint at all")
    assert main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not an invflow checkpoint" in err


def test_configs_lists_presets(capsys) -> None:
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "glow-mnist-tiny" in out and "glow-toy-checkerboard" in out
