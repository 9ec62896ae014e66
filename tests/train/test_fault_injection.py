"""``INVFLOW_FAULT``: a process kills itself with SIGKILL exactly where the variable says."""
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from invflow.train import faults
from invflow.train.checkpoint import load_checkpoint_file, save_checkpoint


def test_unset_is_a_plain_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV_VAR, raising=False)
    buffer = io.BytesIO()
    faults.write_checkpoint_bytes(buffer, b"abc")
    faults.check_startup()
    faults.check_after_step(1)
    assert buffer.getvalue() == b"abc"


def test_term_after_step_signals_only_at_its_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """``term-after-step:S`` sends this process SIGTERM (not SIGKILL) after step S, nowhere else."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setenv(faults.ENV_VAR, "term-after-step:3")
    faults.check_startup()
    for step in range(1, 6):
        faults.check_after_step(step)
    assert sent == [(os.getpid(), signal.SIGTERM)]


@pytest.mark.parametrize(
    "value", ["boom", "after-step", "after-step:x", "checkpoint-write:1", "after-step:-1", "term-after-step"]
)
def test_malformed_value_is_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(faults.ENV_VAR, value)
    with pytest.raises(ValueError, match="INVFLOW_FAULT"):
        faults.check_startup()


def test_checkpoint_write_dies_after_n_bytes_of_the_kth_write(tmp_path: Path) -> None:
    code = (
        f"import torch; from pathlib import Path; from invflow.train.checkpoint import save_checkpoint\n"
        f"for k in range(3): save_checkpoint({{'w': torch.zeros(1000)}}, "
        f"Path({str(tmp_path)!r}) / f'c{{k}}.pt')"
    )
    env = {**os.environ, faults.ENV_VAR: "checkpoint-write:2:100"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL
    load_checkpoint_file(tmp_path / "c0.pt")  # the first write is complete
    assert not (tmp_path / "c1.pt").exists() and not (tmp_path / "c2.pt").exists()
    [tmp] = list(tmp_path.glob(".c1.pt.*.tmp"))
    assert tmp.stat().st_size == 100


def test_cut_is_never_a_whole_file(tmp_path: Path) -> None:
    code = (f"import torch; from pathlib import Path; from invflow.train.checkpoint import save_checkpoint\n"
            f"save_checkpoint({{'w': torch.zeros(10)}}, Path({str(tmp_path)!r}) / 'c.pt')")
    env = {**os.environ, faults.ENV_VAR: "checkpoint-write:1:999999999"}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == -signal.SIGKILL
    [tmp] = list(tmp_path.glob(".c.pt.*.tmp"))
    assert not (tmp_path / "c.pt").exists()
    reference = tmp_path / "ref.pt"
    save_checkpoint({"w": __import__("torch").zeros(10)}, reference)
    assert tmp.stat().st_size == reference.stat().st_size - 1
