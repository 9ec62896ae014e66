"""Non-finite steps are skipped, counted and never saved; bad checkpoints are detected and skipped."""
import pytest
import torch

from invflow import run_files
from invflow.models import load_config
from invflow.storage import DiskFullError
from invflow.train import loop
from invflow.train.batches import Batch, ToyBatches
from invflow.train.checkpoint import (
    CheckpointError,
    CheckpointFallbackWarning,
    NewerCheckpointError,
    latest_good_checkpoint,
    load_checkpoint_file,
    save_checkpoint,
    step_checkpoints,
    write_run_checkpoint,
)
from invflow.train.metrics import read_metrics

SMALL = {"model.steps_per_level": 2, "model.hidden_channels": 8, "data.batch_size": 16, "train.steps": 12,
         "train.checkpoint_every": 3, "train.eval_batches": 1, "train.log_every": 1, "data.toy_samples": 64,
         "train.keep_checkpoints": 2}


def poison_steps(monkeypatch, steps: set[int]) -> None:
    clean = ToyBatches.batch

    def batch(self, step: int) -> Batch:
        b = clean(self, step)
        return Batch(torch.full_like(b.x, float("nan")), b.y) if step in steps else b

    monkeypatch.setattr(ToyBatches, "batch", batch)


def test_nan_batches_are_skipped_counted_and_never_saved(monkeypatch, tmp_path) -> None:
    poison_steps(monkeypatch, {4, 5, 7})
    result = loop.train(load_config("glow-toy-rings", SMALL), tmp_path, progress=False)
    assert result.nonfinite == 3 and result.step == 12
    assert max(r.get("nonfinite", 0) for r in read_metrics(tmp_path / run_files.METRICS)) == 3
    for path in step_checkpoints(tmp_path / run_files.CHECKPOINTS):
        state = load_checkpoint_file(path)
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_too_many_nonfinite_steps_stop_with_a_clear_message(monkeypatch, tmp_path) -> None:
    poison_steps(monkeypatch, set(range(4, 100)))
    with pytest.raises(loop.TrainingDiverged, match=r"non-finite .*train.max_nonfinite=2"):
        loop.train(
            load_config("glow-toy-rings", {**SMALL, "train.max_nonfinite": 2}), tmp_path, progress=False
        )
    state = load_checkpoint_file(tmp_path / run_files.LAST_PATH)
    assert state["step"] == 3


def test_keeps_last_k_and_falls_back_past_a_corrupt_checkpoint(tmp_path) -> None:
    loop.train(load_config("glow-toy-rings", SMALL), tmp_path, progress=False)
    directory = tmp_path / run_files.CHECKPOINTS
    assert [p.name for p in step_checkpoints(directory)] == ["step-00000012.pt", "step-00000009.pt"]
    newest, last = directory / "step-00000012.pt", directory / run_files.LAST_CHECKPOINT
    assert newest.stat().st_ino != last.stat().st_ino  # an independent copy, not a hard link
    newest.write_bytes(newest.read_bytes()[:-100])  # truncate the step file: last.pt still holds step 12
    assert latest_good_checkpoint(directory).step == 12
    last.write_bytes(last.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint_file(last)
    with pytest.warns(CheckpointFallbackWarning) as caught:
        found = latest_good_checkpoint(directory)
    assert found.path.name == "step-00000009.pt" and found.state["step"] == 9
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and all(
        "checksum mismatch" in m and "step-00000009.pt (step 9)" in m for m in messages
    )
    assert "last.pt" in messages[0] and "step-00000012.pt" in messages[1]


def test_a_kill_between_the_step_file_and_last_pt_resumes_from_the_newer_step_file(tmp_path) -> None:
    directory = tmp_path / run_files.CHECKPOINTS
    write_run_checkpoint({"step": 3}, directory, keep=2)
    save_checkpoint({"step": 6}, directory / "step-00000006.pt")  # last.pt not yet replaced
    found = latest_good_checkpoint(directory)
    assert found.step == 6 and found.path.name == "step-00000006.pt" and not found.skipped


def test_checkpoint_from_another_model_is_refused(tmp_path) -> None:
    loop.train(load_config("glow-toy-rings", SMALL), tmp_path, progress=False)
    other = load_config("glow-toy-rings", {**SMALL, "model.hidden_channels": 16, "train.steps": 20})
    with pytest.raises(CheckpointError, match=r"another model .*model.hidden_channels is 8 there, 16 here"):
        loop.train(other, tmp_path, resume=True, progress=False)


def test_checkpoint_write_is_atomic_when_the_disk_is_full(monkeypatch, tmp_path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"step": 1}, path)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("invflow.storage.os.fsync", full_disk)
    with pytest.raises(DiskFullError, match=r"no space left on device writing .*ckpt.pt \(.* free there\)"):
        save_checkpoint({"step": 2}, path)
    assert load_checkpoint_file(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_non_checkpoint_and_version_mismatch(tmp_path) -> None:
    path = tmp_path / "x.pt"
    torch.save({"step": 1}, path)  # a plain torch file
    with pytest.raises(CheckpointError, match="not an invflow checkpoint"):
        load_checkpoint_file(path)
    save_checkpoint({"step": 1}, path)
    data = path.read_bytes().replace(b"invflow-checkpoint 1 ", b"invflow-checkpoint 9 ", 1)
    path.write_bytes(data)
    with pytest.raises(NewerCheckpointError, match="written by a newer invflow \\(checkpoint format 9"):
        load_checkpoint_file(path)
    path.write_bytes(data.replace(b"invflow-checkpoint 9 ", b"invflow-checkpoint 0 ", 1))
    with pytest.raises(CheckpointError, match="format version 0, this invflow reads version 1"):
        load_checkpoint_file(path)


def test_prefetched_batches_train_identically(tmp_path) -> None:
    straight = loop.train(load_config("glow-toy-rings", SMALL), tmp_path / "a", progress=False)
    ahead = loop.train(
        load_config("glow-toy-rings", {**SMALL, "data.num_workers": 2}), tmp_path / "b", progress=False
    )
    for key, value in straight.model.state_dict().items():
        assert torch.equal(ahead.model.state_dict()[key], value), key
