"""Append-only JSON-lines metrics log (``metrics.jsonl`` in the run directory)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsLog:
    """One JSON object per line; on resume, lines past the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def curve(records: list[dict[str, Any]], split: str, key: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of ``key`` in the ``split`` records, sorted by step; a step logged twice
    (a resumed run re-evaluates its final step) keeps its last value, missing values are left out."""
    by_step = {r["step"]: r[key] for r in records if r.get("split") == split and r.get(key) is not None}
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]
