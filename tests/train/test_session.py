"""The parts of a training run (train/session.py, issue 14 item 3): whatever way a run ends, the
batch prefetcher is closed (``finally``), and the parts can be replaced one at a time."""
from __future__ import annotations

from pathlib import Path

import pytest

from invflow.models.registry import load_config
from invflow.train import loop
from invflow.train.batches import Prefetcher
from invflow.train.session import TrainingSession

RUN = {"data.num_workers": 2, "model.hidden_channels": 8, "data.batch_size": 16, "train.eval_batches": 1,
       "train.n_samples_grid": 4, "train.steps": 4, "train.log_every": 2}
SMALL = {**RUN, "model.steps_per_level": 2}


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[Prefetcher]:
    calls: list[Prefetcher] = []
    original = Prefetcher.close
    monkeypatch.setattr(Prefetcher, "close", lambda self: (calls.append(self), original(self)))
    return calls


def test_a_finished_run_closes_its_prefetcher(tmp_path: Path, closed: list[Prefetcher]) -> None:
    result = loop.train(load_config("glow-toy-rings", SMALL), tmp_path / "run", progress=False)
    assert result.step == 4 and len(closed) == 1


def test_a_refused_set_up_closes_its_prefetcher(tmp_path: Path, closed: list[Prefetcher]) -> None:
    config = load_config("resflow-toy-rings", {**RUN, "model.blocks_per_scale": 1, "model.logdet": "exact",
                                               "train.compile": True})
    with pytest.raises(ValueError, match="train.compile=true is not supported by the resflow family"):
        loop.train(config, tmp_path / "run", progress=False)
    assert len(closed) == 1


def test_a_failing_step_closes_its_prefetcher(tmp_path: Path, closed: list[Prefetcher],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self, clock_due: bool) -> None:
        raise RuntimeError(f"periodic work failed at step {self.state.step}")

    monkeypatch.setattr(TrainingSession, "periodic", fail)
    with pytest.raises(RuntimeError, match="periodic work failed at step 1"):
        loop.train(load_config("glow-toy-rings", SMALL), tmp_path / "run", progress=False)
    assert len(closed) == 1
