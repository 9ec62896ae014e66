"""The comparison table: one row per preset from its runs' markers, as Markdown, CSV and JSON."""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from invflow.compare import stats
from invflow.compare.plot import plot_test_curves
from invflow.compare.runner import plan_runs, preset_label
from invflow.compare.spec import CompareSpec
from invflow.storage import write_atomic
from invflow.train.run_dir import RunDir

MIB = 2**20


def _mean_of(markers: list[dict[str, Any]], key: str) -> float | None:
    values = [m[key] for m in markers if m.get(key) is not None]
    return statistics.fmean(values) if values else None


def preset_row(preset: str, markers: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate the finished runs (one per seed) of one preset; error bars from ``stats``."""
    values = [m["test"] for m in markers]
    return {
        "preset": preset_label(preset),
        "seeds": len(markers),
        "steps": min(m["step"] for m in markers),
        "steps_max": max(m["step"] for m in markers),
        "test_mean": stats.mean(values),
        "test_std": stats.sample_std(values),
        "test_sem": stats.standard_error_of_mean(values),
        "eval_stderr": stats.combined_standard_error([m.get("test_stderr") for m in markers]),
        "estimator_stderr": stats.combined_standard_error([m.get("estimator_stderr") for m in markers]),
        "params": markers[0]["params"],
        "images_per_s": _mean_of(markers, "images_per_s"),
        "sample_64_s": _mean_of(markers, "sample_64_s"),
        "fixed_point_iterations": _mean_of(markers, "fixed_point_iterations"),
        "peak_step_mib": max(m["peak_step_bytes"] for m in markers) / MIB,
        "per_seed": values,
    }


def add_differences(rows: list[dict[str, Any]]) -> None:
    """Give every row its difference to the best (lowest) mean and that difference's standard error."""
    best = min(rows, key=lambda r: r["test_mean"])
    for row in rows:
        row["delta_vs_best"], row["delta_se"] = stats.difference(row["per_seed"], best["per_seed"])
        if row is best:
            row["delta_se"] = None


def _fmt(value: float | None, digits: int) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def _delta(row: dict[str, Any]) -> str:
    if row["delta_se"] is None:
        return "best"
    return f"{_fmt(row['delta_vs_best'], 4)} ± {_fmt(row['delta_se'], 4)}"


def markdown_table(rows: list[dict[str, Any]], metric: str) -> str:
    """The table a reader compares presets by; ``n/a`` where a value does not exist (std of one seed)."""
    head = ["preset", "seeds", "steps", f"test {metric} (mean ± std)", "s.e. of mean", "eval s.e.",
            "estimator s.e.", "Δ vs best (± s.e.)", "params", "train img/s", "sample 64 (s)",
            "fixed-point iters", "peak step MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        steps = str(r["steps"]) if r["steps"] == r["steps_max"] else f"{r['steps']}–{r['steps_max']}"
        cells = [r["preset"], str(r["seeds"]), steps, f"{_fmt(r['test_mean'], 4)} ± {_fmt(r['test_std'], 4)}",
                 _fmt(r["test_sem"], 4), _fmt(r["eval_stderr"], 4), _fmt(r["estimator_stderr"], 4),
                 _delta(r), f"{r['params']:,}",
                 _fmt(r["images_per_s"], 1), _fmt(r["sample_64_s"], 3), _fmt(r["fixed_point_iterations"], 1),
                 _fmt(r["peak_step_mib"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _legend(spec: CompareSpec, metric: str) -> str:
    return (
        f"std: sample standard deviation over seeds (n − 1); s.e. of mean = std/√n; eval s.e.: the test "
        f"evaluation's own standard error, combined over seeds as √Σse²/n; estimator s.e.: the same for a "
        f"stochastic log-det estimator (residual flows), n/a where the evaluation reports none. "
        f"Δ vs best: difference of means to the lowest mean, ± √(sem_a² + sem_b²). "
        f"Budget: {spec.budget.as_dict()}; overrides: {spec.overrides or 'none'}. Lower {metric} is better.\n"
    )


def provenance_section(markers: list[dict[str, Any]]) -> str:
    """Where every number comes from: one row per run (checkpoint, step, weights, data, images,
    versions), then every unreadable checkpoint passed over and every damaged run moved aside."""
    lines = [
        "## Provenance\n",
        "| run | checkpoint | step | weights | data | split | images | invflow | torch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in markers:
        p = m.get("provenance") or {}
        lines.append(
            "| "
            + " | ".join(
                str(v)
                for v in [
                    f"{preset_label(m['preset'])} seed {m['seed']}",
                    p.get("checkpoint", "n/a"),
                    p.get("step", "n/a"),
                    p.get("weights", "n/a"),
                    f"{p.get('dataset', 'n/a')} from {p.get('data_dir') or 'generated in code'}",
                    p.get("split", "n/a"),
                    p.get("count", "n/a"),
                    p.get("invflow", "n/a"),
                    p.get("torch", "n/a"),
                ]
            )
            + " |"
        )
    warnings = [f"- {preset_label(m['preset'])} seed {m['seed']}: {w}" for m in markers
                for w in m.get("checkpoint_warnings", [])]
    if warnings:
        lines += ["", "## Checkpoint warnings", "", *warnings]
    return "\n".join(lines) + "\n"


def _finite(obj: Any) -> Any:
    """``obj`` with NaN/inf floats as ``None``, so the JSON is strict (no ``NaN`` tokens)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _environment(markers: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    first = (
        RunDir(out / "runs" / preset_label(markers[0]["preset"]) / f"seed-{markers[0]['seed']}").environment
    )
    return json.loads(first.read_text()) if first.is_file() else {}


def write_report(spec: CompareSpec, out: str | Path, markers: list[dict[str, Any]]) -> dict[str, Path]:
    """Write ``summary.md``, ``summary.csv``, ``summary.json`` and the test-curve PNG into ``out``."""
    out = Path(out)
    metric = markers[0]["metric"]
    rows = [preset_row(p, [m for m in markers if m["preset"] == p]) for p in spec.presets]
    add_differences(rows)
    title = (
        f"# Comparison `{spec.name}`\n\n{spec.description}\n\n"
        if spec.description
        else f"# Comparison `{spec.name}`\n\n"
    )
    paths = {"md": out / "summary.md", "csv": out / "summary.csv", "json": out / "summary.json"}
    write_atomic(paths["md"], title + markdown_table(rows, metric) + "\n" + _legend(spec, metric) + "\n"
                 + provenance_section(markers))
    table = io.StringIO(newline="")
    columns = [k for k in rows[0] if k != "per_seed"]
    writer = csv.DictWriter(table, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    write_atomic(paths["csv"], table.getvalue())
    write_atomic(paths["json"], json.dumps(_finite({
        "spec": {"name": spec.name, "description": spec.description, "presets": list(spec.presets),
                 "seeds": spec.seeds, **spec.identity()},
        "metric": metric, "presets": rows, "runs": markers, "environment": _environment(markers, out),
    }), indent=1) + "\n")
    paths["png"] = plot_test_curves([r.run_dir for r in plan_runs(spec, out)], metric,
                                    out / f"test_{metric}_vs_step.png")
    return paths
