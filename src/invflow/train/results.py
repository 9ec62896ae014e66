"""What a run reports beside its metrics log: the best and the last test evaluation
(``results.json``; Lu & Huang 2020, app. C.1, report the best of the periodic test evaluations),
and, for image folders, which files were held out (``test_split.json``; app. D)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from invflow import run_files
from invflow.config import DataConfig
from invflow.data import held_out
from invflow.data.held_out import HeldOutSet
from invflow.storage import write_atomic
from invflow.train.metrics import read_metrics


def best_and_last(metrics: Path, metric: str) -> dict[str, Any]:
    """The lowest finite and the latest test ``metric`` in a ``metrics.jsonl`` (step, value, stderr;
    a non-finite value is logged as null, and ``best`` is null when no evaluation was finite)."""
    tests = [r for r in read_metrics(metrics) if r.get("split") == "test" and metric in r]
    if not tests:
        raise ValueError(f"{metrics}: no test evaluation of {metric} recorded")

    def entry(r: dict[str, Any] | None) -> dict[str, Any] | None:
        return (
            None
            if r is None
            else {"step": r["step"], "value": r[metric], "stderr": r.get(f"{metric}_stderr")}
        )

    finite = [r for r in tests if r[metric] is not None]
    best = min(finite, key=lambda r: (r[metric], r["step"])) if finite else None
    return {"metric": metric, "best": entry(best), "last": entry(tests[-1]), "evaluations": len(tests)}


def write_results(root: Path, metrics: Path, metric: str) -> dict[str, Any]:
    """Write ``results.json`` (best and last test evaluation) into run directory ``root``."""
    summary = best_and_last(metrics, metric)
    clean = json.loads(json.dumps(summary, allow_nan=True), parse_constant=lambda c: None)
    write_atomic(Path(root) / run_files.RESULTS, json.dumps(clean, indent=2) + "\n")
    return summary


def record_held_out(root: Path, held: HeldOutSet, data: DataConfig, data_dir: str | None) -> HeldOutSet:
    """Write a new image-folder run's ``test_split.json``: the split rule, its options, the held-out
    files (relative paths) and their SHA-256, which every later command of the run checks."""
    extra = {"data_dir": str(data_dir or data.data_dir), "folder_test_images": data.folder_test_images,
             "folder_split_seed": data.folder_split_seed}
    return held_out.write(held, Path(root) / run_files.HELD_OUT, extra)
