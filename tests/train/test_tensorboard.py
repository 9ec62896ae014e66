"""TensorBoard event files of a run (``RUN/tb``), read back with tensorboard's ``EventAccumulator``."""
import sys
from pathlib import Path

import pytest
from tbevents import event_accumulator, scalar_steps

from invflow import run_files
from invflow.cli import main
from invflow.train.metrics import read_metrics

TOY = ["--set", "data.batch_size=16", "--set", "data.toy_samples=64", "--set", "train.eval_batches=1",
       "--set", "model.hidden_channels=8", "--set", "train.n_samples_grid=4", "--set", "train.log_every=1"]
GLOW_TOY = ["glow-toy-rings", *TOY, "--set", "model.steps_per_level=2"]


def test_a_tiny_run_writes_scalars_and_sample_images(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    argv = [
        "train",
        "resflow-toy-rings",
        *TOY,
        "--set",
        "model.blocks_per_scale=2",
        "--set",
        "model.logdet=unbiased",
        "--set",
        "model.learn_norm_orders=true",
        "--set",
        "train.steps=4",
        "--set",
        "train.eval_every=2",
        "--set",
        "train.sample_every=2",
        "--out",
        str(run),
    ]
    assert main(argv) == 0
    events = event_accumulator(run / "tb")
    tags = set(events.Tags()["scalars"])
    for tag in (
        "train/bits",
        "train/lr",
        "train/images_per_s",
        "train/grad_norm",
        "train/nonfinite",
        "train/logdet_terms",
        "train/logdet_mean",
        "train/norm_order/0",
        "test/bits",
        "test/bits_stderr",
    ):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    assert scalar_steps(events, "train/bits") == [1, 2, 3, 4]
    assert scalar_steps(events, "test/bits") == [2, 4]
    logged = [r for r in read_metrics(run / run_files.METRICS) if r["split"] == "train"]
    assert [e.value for e in events.Scalars("train/bits")] == pytest.approx(
        [r["bits"] for r in logged], rel=1e-6
    )
    images = events.Images("samples")
    assert [image.step for image in images] == [2, 4]  # at sample_every and the final grid
    assert images[0].width > 0 and images[0].encoded_image_string.startswith(b"\x89PNG")


def test_resume_appends_without_duplicating_steps(tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["train", *GLOW_TOY, "--set", "train.checkpoint_every=2", "--set", "train.keep_checkpoints=10",
              "--set", "train.eval_every=100", "--out", str(run)]
    assert main([*common, "--set", "train.steps=6"]) == 0
    # A crash after step 6 was logged but before its checkpoint: the run resumes from step 4 and
    # logs steps 5 and 6 again; the events of the first attempt past step 4 must be purged.
    (run / run_files.LAST_PATH).unlink()
    (run / run_files.CHECKPOINTS / "step-00000006.pt").unlink()
    assert main([*common, "--set", "train.steps=8", "--resume"]) == 0
    events = event_accumulator(run / "tb")
    assert scalar_steps(events, "train/bits") == list(range(1, 9))
    assert scalar_steps(events, "test/bits") == [8]
    assert [image.step for image in events.Images("samples")] == [8]


def test_without_tensorboard_the_run_says_once_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    run = tmp_path / "run"
    assert main(["train", *GLOW_TOY, "--set", "train.steps=3", "--set", "train.sample_every=1",
                 "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert err.count("not writing TensorBoard event files") == 1
    assert 'pip install "invflow[tensorboard]"' in err
    assert not (run / "tb").exists() and (run / run_files.METRICS).is_file()


def test_tensorboard_can_be_switched_off(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", *GLOW_TOY, "--set", "train.steps=2", "--set", "train.tensorboard=false",
                 "--out", str(run)]) == 0
    assert not (run / "tb").exists() and "TensorBoard" not in capsys.readouterr().err
