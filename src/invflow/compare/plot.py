"""Test metric against training step for every run of a comparison (one colour per preset)."""
from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from invflow.storage import write_atomic
from invflow.train.metrics import read_metrics
from invflow.train.run_dir import RunDir
from invflow.viz.curves import curve


def held_out_curve(run_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of the run's held-out evaluations; a step evaluated twice (a resumed
    run re-evaluates its final step) keeps its last value."""
    return curve(read_metrics(RunDir(run_dir).metrics), "test", metric)


def plot_test_curves(run_dirs: list[Path], metric: str, path: Path) -> Path:
    """Save a PNG with one line per run (``runs/<preset>/seed-<k>``), coloured by preset."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    colours: dict[str, str] = {}
    for run_dir in run_dirs:
        preset = Path(run_dir).parent.name
        steps, values = held_out_curve(run_dir, metric)
        first = preset not in colours
        colours.setdefault(preset, f"C{len(colours) % 10}")
        ax.plot(steps, values, marker="o", markersize=3, alpha=0.8, color=colours[preset],
                label=preset if first else None)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"test {metric} (EMA weights)")
    ax.set_title(f"test {metric} vs step, one line per seed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=120, format="png")
    return write_atomic(path, png.getvalue())
