"""Append-only JSON-lines metrics log (``metrics.jsonl`` in the run directory)."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from invflow import run_files
from invflow.storage import append_text, write_atomic


class MetricsLog:
    """One JSON object per line; on resume, lines past the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            kept = [record for record in read_metrics(self.path) if record.get("step", 0) <= resume_step]
            write_atomic(self.path, "".join(json.dumps(record) + "\n" for record in kept))

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        append_text(self.path, json.dumps(clean) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file: the one reader of the format. Blank lines are
    skipped; a last line cut short (a process killed while writing it) is dropped with a warning
    naming the file and line; any other line that is not a JSON object is a ``ValueError`` naming
    the file and line."""
    path = Path(path)
    numbered = [(n, line) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if i == len(numbered) - 1:
                warnings.warn(f"{path} line {n}: dropping a line cut short (a process killed while writing "
                              f"it): {line[:80]!r}", RuntimeWarning, stacklevel=2)
                continue
            raise ValueError(f"{path} line {n}: not a JSON record ({err.msg}): {line[:80]!r}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path} line {n}: expected a JSON object, got {type(record).__name__}: "
                             f"{line[:80]!r}")
        records.append(record)
    return records



def read_run_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run directory's ``metrics.jsonl``; a clear error when there is none."""
    path = Path(run_dir) / run_files.METRICS
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl (not a run directory, or nothing logged yet)")
    return read_metrics(path)
