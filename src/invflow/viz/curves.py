"""Training and test curves of one or several runs from their ``metrics.jsonl`` records
(matplotlib): training metric per logged step as a thin line, test metric as markers with its
standard error as a band, one colour per run."""
from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from invflow import run_files

METRICS = ("bpd", "bits")  # images: bits/dim; 2D toys: bits per sample


def curve(records: list[dict], split: str, key: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of ``key`` in the ``split`` records, sorted by step; a step logged twice
    (a resumed run re-evaluates its final step) keeps its last value, missing values are left out."""
    by_step = {r["step"]: r[key] for r in records if r.get("split") == split and r.get(key) is not None}
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def run_metric(records: list[dict], where: Path) -> str:
    """The metric a run logs (``bpd`` or ``bits``)."""
    for metric in METRICS:
        if any(r.get(metric) is not None for r in records):
            return metric
    raise ValueError(f"{where}: no training or test values logged yet")


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Short names of the runs: their paths below the longest common folder."""
    resolved = [Path(r).resolve() for r in run_dirs]
    if len(resolved) == 1:
        return [resolved[0].name]
    common = Path(os.path.commonpath(resolved))
    return [str(r.relative_to(common)) if r != common else r.name for r in resolved]


def plot_curves(runs: dict[Path, list[dict]], path: Path) -> Path:
    """Write one figure with the curves of every run (its folder -> its ``metrics.jsonl``
    records); refuses runs of different metrics."""
    measured = [
        (run_dir, records, run_metric(records, run_dir / run_files.METRICS))
        for run_dir, records in runs.items()
    ]
    kinds = {metric for _, _, metric in measured}
    if len(kinds) > 1:
        raise ValueError(
            f"cannot plot runs measured in {' and '.join(sorted(kinds))} on one axis; plot them separately"
        )
    metric = kinds.pop()
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, ((_, records, _), label) in enumerate(zip(measured, run_labels(list(runs)))):
        colour = f"C{i % 10}"
        steps, values = curve(records, "train", metric)
        ax.plot(steps, values, color=colour, alpha=0.5, linewidth=1, label=f"{label} train")
        steps, values = curve(records, "test", metric)
        _, errors = curve(records, "test", f"{metric}_stderr")
        if steps:
            ax.plot(steps, values, "o-", color=colour, markersize=4, label=f"{label} test (± s.e.)")
            if len(errors) == len(values):
                ax.fill_between(steps, [v - e for v, e in zip(values, errors)],
                                [v + e for v, e in zip(values, errors)], color=colour, alpha=0.25)
    ax.set_xlabel("training step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: training (thin) and test (markers, band = standard error)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
