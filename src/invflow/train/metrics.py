"""Append-only JSON-lines metrics log (``metrics.jsonl`` in the run directory)."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from invflow.storage import append_text, write_atomic


class MetricsLog:
    """One JSON object per line; on resume, lines past the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if (record := _parse(line, self.path)) is not None and record.get("step", 0) <= resume_step
            ]
            write_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        append_text(self.path, json.dumps(clean) + "\n")


def _parse(line: str, path: Path) -> dict[str, Any] | None:
    """One record, or ``None`` for a blank line or a line cut short by a killed process (warned)."""
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        warnings.warn(f"{path}: dropping a line cut short (a process killed while writing it): {line[:80]!r}",
                      RuntimeWarning, stacklevel=3)
        return None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]



def read_run_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run directory's ``metrics.jsonl``; a clear error when there is none."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl (not a run directory, or nothing logged yet)")
    return read_metrics(path)
