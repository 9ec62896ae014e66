"""Plan, run and resume a comparison: every preset × seed trained under one budget.

Layout of the output folder ``OUT``::

    OUT/compare.json                        the shared overrides and budget (checked on rerun)
    OUT/runs/<preset>/seed-<k>/             ordinary run directories (invflow train ... --out)
    OUT/runs/<preset>/seed-<k>/compare-run.json   progress; "finished": true once measured
    OUT/summary.{md,csv,json}, OUT/test_bpd_vs_step.png

Rerunning the same comparison skips finished runs and resumes unfinished ones from their last
checkpoint (``train(..., resume=True)``, bit-for-bit). A run whose checkpoint files are all
unreadable is not finished: it is moved to ``OUT/damaged/<preset>/seed-<k>`` (never deleted) and
trained again, unless ``retrain_damaged=False``. Checkpoints skipped as unreadable are recorded in
the run's marker (``checkpoint_warnings``) and the summary. A wall-clock budget is spent in chunks of
``train.checkpoint_every`` steps, each a resumed ``train`` call, so the budget is checked at chunk
boundaries and the steps reached are recorded.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invflow.compare.measure import measure_run
from invflow.compare.spec import CompareSpec
from invflow.config import Config
from invflow.storage import write_atomic
from invflow.train.checkpoint import CheckpointError, CheckpointFallbackWarning, latest_good_checkpoint
from invflow.train.interrupt import TrainingInterrupted
from invflow.train.loop import train
from invflow.train.run_dir import RunDir

PLAN_FILE = "compare.json"
MARKER_FILE = "compare-run.json"
DAMAGED_FOLDER = "damaged"


class RunInterrupted(KeyboardInterrupt):
    """A signal stopped the comparison inside one run; the message names it and how to resume."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
    """Write JSON atomically (a kill or a full disk never leaves half a file)."""
    write_atomic(path, json.dumps(data, indent=1) + "\n")


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
        progress = _checkpoint_warnings(progress, result.checkpoint_fallbacks)
        return {**progress, "step": result.step, "train_seconds": progress["train_seconds"] + result.seconds,
                "metric": result.metric}
    budget_s = spec.budget.minutes * 60
    while progress["train_seconds"] < budget_s:
        target = progress["step"] + config.train.checkpoint_every
        result = train(_with_steps(config, target), run.run_dir, resume=True, data_dir=data_dir)
        progress = _checkpoint_warnings(progress, result.checkpoint_fallbacks)
        progress = {
            **progress,
            "step": result.step,
            "train_seconds": progress["train_seconds"] + result.seconds,
            "metric": result.metric,
        }
        _write_json(run.run_dir / MARKER_FILE, progress)
        log(f"{run.label}: step {result.step}, {progress['train_seconds']:.0f}s of {budget_s:.0f}s")
    return progress


def _check_checkpoints(run: PlannedRun) -> tuple[str | None, list[str]]:
    """``(why the run cannot be resumed, or None; the unreadable checkpoints passed over)``: the
    first is set when the run has checkpoint files and none of them is readable."""
    try:
        with warnings.catch_warnings():  # announced by whoever loads the run next
            warnings.simplefilter("ignore", CheckpointFallbackWarning)
            found = latest_good_checkpoint(RunDir(run.run_dir).checkpoints)
    except CheckpointError as err:
        return str(err), []
    return None, [] if found is None else found.fallbacks()


def _move_aside(run: PlannedRun, out: Path) -> Path:
    """Move a damaged run directory to ``out/damaged/<preset>/seed-<k>[-n]``, never over another."""
    target = out / DAMAGED_FOLDER / run.run_dir.parent.name / run.run_dir.name
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{run.run_dir.name}-{n}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(run.run_dir, target)
    return target


def _checkpoint_warnings(progress: dict[str, Any], new: list[str]) -> dict[str, Any]:
    seen = progress.get("checkpoint_warnings", [])
    return {**progress, "checkpoint_warnings": seen + [w for w in new if w not in seen]} if new else progress


def run_one(spec: CompareSpec, run: PlannedRun, data_dir: str | None = None,
            log: Callable[[str], None] = print, out: Path | None = None,
            retrain_damaged: bool = True) -> dict[str, Any]:
    """Train, evaluate and measure one run unless its marker says it is finished; returns the marker.
    A run with only unreadable checkpoints is moved aside under ``out`` and trained again."""
    progress = read_marker(run.run_dir)
    damage, fallbacks = _check_checkpoints(run)
    if damage is not None:
        if not retrain_damaged:
            raise ValueError(f"run {run.label} in {run.run_dir} has no readable checkpoint ({damage}); rerun "
                             "without --no-retrain-damaged to move it aside and train it again")
        moved = _move_aside(run, Path(out) if out is not None else run.run_dir.parents[2])
        log(
            f"run {run.label} has no readable checkpoint ({damage}); moved it to {moved} "
            "and training it again"
        )
        progress = {"preset": run.preset, "seed": run.seed, "budget": spec.budget.as_dict(), "step": 0,
                    "train_seconds": 0.0, "finished": False, "damaged_run_moved_to": str(moved),
                    "checkpoint_warnings": [f"{run.run_dir}: {damage}; moved to {moved} and retrained"]}
    if progress is not None and progress.get("finished"):
        log(f"skipping finished run {run.label} (step {progress['step']})")
        for message in fallbacks:
            warnings.warn(f"finished run {run.label}: {message}", CheckpointFallbackWarning, stacklevel=2)
        if set(fallbacks) - set(progress.get("checkpoint_warnings", [])):
            progress = _checkpoint_warnings(progress, fallbacks)
            _write_json(run.run_dir / MARKER_FILE, progress)
        return progress
    log(f"{'resuming' if run.run_dir.exists() else 'starting'} run {run.label} in {run.run_dir}")
    run.run_dir.mkdir(parents=True, exist_ok=True)
    progress = progress or {"preset": run.preset, "seed": run.seed, "budget": spec.budget.as_dict(),
                            "step": 0, "train_seconds": 0.0, "finished": False}
    try:
        progress = _train_to_budget(spec, run, progress, data_dir, log)
    except (KeyboardInterrupt, TrainingInterrupted) as err:  # the latter: checkpointed at a step boundary
        code = getattr(err, "exit_code", 130)
        saved = f" (checkpointed at step {err.step})" if isinstance(err, TrainingInterrupted) else ""
        raise RunInterrupted(f"{'terminated' if code == 143 else 'interrupted'} during run {run.label} in "
                             f"{run.run_dir}{saved}; rerunning the same command resumes it from its last "
                             "checkpoint", code) from err
    measured = measure_run(run.run_dir, progress["metric"])
    progress = _checkpoint_warnings(progress, measured.pop("checkpoint_warnings"))
    progress = {**progress, **measured, "finished": True}
    _write_json(run.run_dir / MARKER_FILE, progress)
    log(
        f"finished run {run.label}: test {progress['metric']} {progress['test']:.4f} "
        f"at step {progress['step']}"
    )
    return progress


def run_comparison(spec: CompareSpec, out: str | Path, data_dir: str | None = None,
                   log: Callable[[str], None] = print, retrain_damaged: bool = True) -> list[dict[str, Any]]:
    """Run (or finish) every planned run of ``spec`` under ``out``; returns their markers in plan order."""
    out = Path(out)
    for preset in spec.presets:
        spec.config(preset, 0)  # fail on a bad preset or override before hours of training
    spec.check_one_quantity()
    check_plan(spec, out)
    return [run_one(spec, run, data_dir, log, out, retrain_damaged) for run in plan_runs(spec, out)]
