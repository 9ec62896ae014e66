"""SIGKILL a training process at fault-injection points (one of them in the middle of a checkpoint
write), resume each time, and end bit-identical to an uninterrupted run: ``scripts/kill_loop.py``.

The kills come from ``INVFLOW_FAULT`` inside the process, not from a timer, so these tests do not
depend on machine load: the same seed kills at the same places every time."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kill_loop.py"


def run_kill_loop(tmp_path: Path, kills: int, steps: int) -> dict:
    report = tmp_path / "kill_loop.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--kills",
            str(kills),
            "--seed",
            "0",
            "--steps",
            str(steps),
            "--workdir",
            str(tmp_path / "runs"),
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(report.read_text())


def test_three_kills_one_of_them_during_a_checkpoint_write(tmp_path: Path) -> None:
    report = run_kill_loop(tmp_path, kills=3, steps=12)
    assert report["result"] == "pass" and report["bit_identical"]
    assert report["kills"] == 3 and report["kills_by_mode"] == {"startup": 1, "random": 1, "write": 1}
    assert report["kills_during_write"] == 1 and report["runs"] == 4
    assert [e["during_write"] for e in report["events"]] == [False, False, True]
    assert all(e["error"] is None for e in report["events"])


@pytest.mark.slow
def test_many_kills(tmp_path: Path) -> None:
    report = run_kill_loop(tmp_path, kills=30, steps=150)
    assert report["result"] == "pass" and report["bit_identical"] and report["kills"] == 30
    assert report["kills_during_write"] == 10
