"""Plan, run and resume a comparison: every preset × seed trained under one budget.

Layout of the output folder ``OUT``::

    OUT/compare.json                        the shared overrides and budget (checked on rerun)
    OUT/runs/<preset>/seed-<k>/             ordinary run directories (invflow train ... --out)
    OUT/runs/<preset>/seed-<k>/compare-run.json   progress; "finished": true once measured
    OUT/summary.{md,csv,json}, OUT/test_bpd_vs_step.png

Rerunning the same comparison skips finished runs and resumes unfinished ones from their last
checkpoint (``train(..., resume=True)``, bit-for-bit). A wall-clock budget is spent in chunks of
``train.checkpoint_every`` steps, each a resumed ``train`` call, so the budget is checked at chunk
boundaries and the steps reached are recorded.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invflow.compare.measure import measure_run
from invflow.compare.spec import CompareSpec
from invflow.config import Config
from invflow.train.loop import train

PLAN_FILE = "compare.json"
MARKER_FILE = "compare-run.json"


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a comparison."""

    preset: str
    seed: int
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.preset} seed {self.seed}"


def preset_label(preset: str) -> str:
    """The folder name of a preset: its name, or the stem of a YAML path."""
    return Path(preset).stem if preset.endswith((".yaml", ".yml")) else preset


def plan_runs(spec: CompareSpec, out: Path) -> list[PlannedRun]:
    """Every (preset, seed) pair, preset-major, with its run directory under ``out/runs``."""
    return [PlannedRun(p, k, Path(out) / "runs" / preset_label(p) / f"seed-{k}")
            for p in spec.presets for k in range(spec.seeds)]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a kill never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def read_marker(run_dir: Path) -> dict[str, Any] | None:
    """The progress record of a run directory, or ``None`` if the comparison never got that far."""
    path = Path(run_dir) / MARKER_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def check_plan(spec: CompareSpec, out: Path) -> None:
    """Record the shared overrides and budget in ``out``, or refuse to mix runs made under others."""
    path = Path(out) / PLAN_FILE
    want = spec.identity()
    if path.is_file():
        have = json.loads(path.read_text())
        for key in ("set", "budget"):
            if have.get(key) != want[key]:
                raise ValueError(f"{out} holds a comparison with {key} {have.get(key)} but this one has "
                                 f"{want[key]}; use another --out")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, want)


def _with_steps(config: Config, steps: int) -> Config:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps))


def _train_to_budget(spec: CompareSpec, run: PlannedRun, progress: dict[str, Any], data_dir: str | None,
                     log: Callable[[str], None]) -> dict[str, Any]:
    """Train (or resume) one run until its budget is spent; returns the updated progress record."""
    config = spec.config(run.preset, run.seed)
    if spec.budget.steps is not None:
        result = train(config, run.run_dir, resume=True, data_dir=data_dir)
        return {**progress, "step": result.step, "train_seconds": progress["train_seconds"] + result.seconds,
                "metric": result.metric}
    budget_s = spec.budget.minutes * 60
    while progress["train_seconds"] < budget_s:
        target = progress["step"] + config.train.checkpoint_every
        result = train(_with_steps(config, target), run.run_dir, resume=True, data_dir=data_dir)
        progress = {**progress, "step": result.step, "train_seconds": progress["train_seconds"] + result.seconds,
                    "metric": result.metric}
        _write_json(run.run_dir / MARKER_FILE, progress)
        log(f"{run.label}: step {result.step}, {progress['train_seconds']:.0f}s of {budget_s:.0f}s")
    return progress


def run_one(spec: CompareSpec, run: PlannedRun, data_dir: str | None = None,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, evaluate and measure one run unless its marker says it is finished; returns the marker."""
    progress = read_marker(run.run_dir)
    if progress is not None and progress.get("finished"):
        log(f"skipping finished run {run.label} (step {progress['step']})")
        return progress
    log(f"{'resuming' if run.run_dir.exists() else 'starting'} run {run.label} in {run.run_dir}")
    run.run_dir.mkdir(parents=True, exist_ok=True)
    progress = progress or {"preset": run.preset, "seed": run.seed, "budget": spec.budget.as_dict(),
                            "step": 0, "train_seconds": 0.0, "finished": False}
    progress = _train_to_budget(spec, run, progress, data_dir, log)
    progress = {**progress, **measure_run(run.run_dir, progress["metric"]), "finished": True}
    _write_json(run.run_dir / MARKER_FILE, progress)
    log(f"finished run {run.label}: test {progress['metric']} {progress['test']:.4f} at step {progress['step']}")
    return progress


def run_comparison(spec: CompareSpec, out: str | Path, data_dir: str | None = None,
                   log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run (or finish) every planned run of ``spec`` under ``out``; returns their markers in plan order."""
    out = Path(out)
    for preset in spec.presets:
        spec.config(preset, 0)  # fail on a bad preset or override before hours of training
    check_plan(spec, out)
    return [run_one(spec, run, data_dir, log) for run in plan_runs(spec, out)]
