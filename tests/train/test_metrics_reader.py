"""One reader of ``metrics.jsonl`` for the whole project: a last line cut by a kill is dropped with a
warning naming the file and line; any other damage is a one-line error naming the file and line
(``invflow plot`` included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from invflow import run_files
from invflow.cli import main
from invflow.train.metrics import read_metrics

GOOD = '{"step": 1, "split": "train", "bits": 5.0}\n{"step": 2, "split": "train", "bits": 4.5}\n'


def test_a_cut_last_line_is_dropped_with_a_warning_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / run_files.METRICS
    path.write_text(GOOD + '{"step": 3, "split": "tr')
    with pytest.warns(RuntimeWarning, match=rf"{path} line 3: dropping a line cut short"):
        assert [r["step"] for r in read_metrics(path)] == [1, 2]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ('{"step": 3, "split": "tr\n', "line 2: not a JSON record"),
        ("[1, 2]\n", "line 2: expected a JSON object, got list"),
    ],
)
def test_other_damage_is_an_error_naming_file_and_line(
    tmp_path: Path, capsys, damage: str, message: str
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lines = GOOD.splitlines(keepends=True)
    (run / run_files.METRICS).write_text(lines[0] + damage + lines[1])
    with pytest.raises(ValueError, match=message):
        read_metrics(run / run_files.METRICS)
    assert main(["plot", str(run), "-o", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{run / 'metrics.jsonl'} {message}" in err
