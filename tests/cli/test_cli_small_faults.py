"""Small things that looked broken (issue 17, items 4 and 5): labels that are not there, a closed
pipe, an enormous configuration value, a one-image test split, SIGTERM to a comparison."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from image_folders import random_image_folder
from invflow import run_files
from invflow.cli import main
from invflow.train.checkpoint import step_checkpoints

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def one_line_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("invflow: error:"), err
    return err


def test_a_hybrid_classifier_refuses_an_unlabelled_image_folder(tmp_path, capsys) -> None:
    folder = random_image_folder(tmp_path / "images", 20)
    err = one_line_error(
        [
            "train",
            "resflow-hybrid-mnist-tiny",
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
    assert ("resflow-hybrid-mnist-tiny: the hybrid model (a classifier) needs class labels, but data.dataset "
            "'folder' has none") in err
    assert not (tmp_path / "run" / run_files.CHECKPOINTS).exists() or not any(
        (tmp_path / "run" / run_files.CHECKPOINTS).iterdir()
    )


def test_a_closed_pipe_ends_quietly() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "invflow", "configs"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -0`: the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert err == "" and proc.returncode == 141


def test_an_enormous_config_value_is_quoted_short(tmp_path, capsys) -> None:
    # A YAML alias bomb: nine levels of nine references, 9**9 elements once expanded.
    anchors = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    anchors += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    lines = ["base: glow-toy-rings", "model:", "  levels: [" + ", ".join(anchors) + "]"]
    config = tmp_path / "bomb.yaml"
    config.write_text("\n".join(lines) + "\n")
    err = one_line_error(["train", str(config), "--out", str(tmp_path / "run")], capsys)
    assert "model.levels must be an integer, got [['x', 'x'" in err and len(err) < 400


def test_a_long_set_value_is_cut_in_the_error(tmp_path, capsys) -> None:
    err = one_line_error(["train", "glow-toy-rings", "--set", "model.levels=" + "x" * 100_000,
                          "--out", str(tmp_path / "run")], capsys)
    assert "model.levels must be an integer, got 'xxxx" in err and len(err) < 400


def test_a_one_image_test_split_says_the_standard_error_is_undefined(tmp_path, capsys) -> None:
    folder = random_image_folder(tmp_path / "images", 10)  # the last tenth, one image, is the test split
    sets = {
        "data.dataset": "folder",
        "data.image_size": 8,
        "data.batch_size": 4,
        "model.levels": 2,
        "model.steps_per_level": 1,
        "model.hidden_channels": 4,
        "train.steps": 2,
        "train.n_samples_grid": 4,
    }
    argv = ["train", "glow-mnist-tiny", "--data-dir", str(folder), "--out", str(tmp_path / "run")]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    capsys.readouterr()
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "(standard error undefined)" in out and "nan" not in out
    assert "invflow: warning: evaluated on only 1 sample: the split is too small for a standard error" in err
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "standard error undefined: only 1 sample" in out and "nan" not in out


def test_sigterm_to_compare_names_the_interrupted_run_and_a_rerun_resumes_it(tmp_path) -> None:
    """The run sends itself SIGTERM right after step 7 (``INVFLOW_FAULT=term-after-step:7``, no
    timer): compare exits 143 naming the run, and the same command resumes it."""
    out = tmp_path / "cmp"
    run = out / "runs" / "glow-toy-rings" / "seed-0"
    argv = [sys.executable, "-m", "invflow", "compare", "glow-toy-rings", "--seeds", "1", "--steps", "20",
            "--out", str(out)]
    for key, value in {
        "model.steps_per_level": 1,
        "model.hidden_channels": 4,
        "data.batch_size": 8,
        "data.toy_samples": 32,
        "train.checkpoint_every": 5,
        "train.eval_batches": 1,
        "train.n_samples_grid": 4,
        "train.eval_every": 1000,
        "train.sample_every": 1000,
    }.items():
        argv += ["--set", f"{key}={value}"]
    proc = subprocess.run(argv, env={**ENV, "INVFLOW_FAULT": "term-after-step:7"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 143, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"invflow: terminated during run glow-toy-rings seed 0 in {run}"), proc.stderr
    assert last.endswith("; rerunning the same command resumes it from its last checkpoint"), proc.stderr
    assert len(step_checkpoints(run / run_files.CHECKPOINTS)) >= 1
    rerun = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming {run} from " in rerun.stdout, rerun.stdout


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_loading_commands_name_the_checkpoint(command: str, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "glow-toy-rings",
                "--set",
                "train.steps=3",
                "--set",
                "model.hidden_channels=4",
                "--set",
                "data.toy_samples=32",
                "--set",
                "train.eval_batches=1",
                "--set",
                "data.batch_size=8",
                "--set",
                "model.steps_per_level=1",
                "--set",
                "train.n_samples_grid=4",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main([command, str(run)]) == 0
    assert f"checkpoint: {run / 'checkpoints' / 'last.pt'} (step 3, EMA weights)" in capsys.readouterr().out


def test_a_deprecation_warning_reaches_the_command_line_once(tmp_path) -> None:
    """Python hides DeprecationWarning outside __main__ (pytest does not, hence a real process);
    the CLI shows invflow's own, once."""
    import subprocess
    import sys

    import yaml

    config = tmp_path / "old.yaml"
    config.write_text(yaml.safe_dump({"base": "glow-toy-rings", "data": {"augment": False}}))
    proc = subprocess.run([sys.executable, "-m", "invflow", "train", str(config),
                           "--out", str(tmp_path / "run"), "--set", "train.steps=2",
                           "--set", "model.hidden_channels=8", "--set", "train.n_samples_grid=4",
                           "--set", "train.device=cpu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    err = proc.stderr
    assert err.count("invflow: warning: data.augment is deprecated") == 1, err
