"""Crash-safety kill loop: SIGKILL a training process many times, resume it, compare with a clean run.

A small 2D-toy Glow (``glow-toy-rings`` shrunk by ``--set``) trains in a subprocess with a
checkpoint after every step. Each launch kills itself with SIGKILL at a point chosen by the
fault-injection variable ``INVFLOW_FAULT`` (``invflow.train.faults``), in one of three ways
taken in turn, the exact point drawn from ``--seed``:

- ``startup``: after the model is built and the checkpoint restored, before the first step;
- ``random``: right after optimizer step ``S`` (1 to 3 steps past the resume point), before
  that step's checkpoint is written;
- ``write``: in the middle of writing the ``K``-th checkpoint file of the launch (K in 1..3),
  after ``N`` bytes of its temporary file (always cut short).

The kills do not depend on timing or machine load: the same seed kills at the same places.
After every kill the run directory must hold a readable checkpoint (once one has been written)
whose step never goes backwards. A kill counts as *during a write* when a temp file the killed
process created is left behind. Finally the run is resumed to the end and its model and EMA
parameters must be bit-identical to those of an uninterrupted run of the same config.

    python scripts/kill_loop.py --kills 30 --seed 0

prints runs, kills, kills during a checkpoint write and the result, and writes JSON to
``benchmarks/results/kill_loop.json``. Exit status 0 when every check passed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from invflow.config import dump_config
from invflow.models import load_config
from invflow.train.checkpoint import (
    CheckpointError,
    latest_good_checkpoint,
    load_checkpoint_file,
    step_checkpoints,
)
from invflow.train.faults import ENV_VAR as FAULT_VAR
from invflow.train.run_dir import RunDir

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "kill_loop.json"
PRESET = "glow-toy-rings"
OVERRIDES = {
    "model.steps_per_level": 4, "model.hidden_channels": 32, "data.batch_size": 64, "data.toy_samples": 256,
    "train.checkpoint_every": 1, "train.keep_checkpoints": 2, "train.eval_every": 100_000,
    "train.sample_every": 100_000, "train.eval_batches": 1, "train.deterministic": True,
    "train.n_samples_grid": 4, "train.warmup_steps": 10, "train.device": "cpu",
}
# One thread, so that the arithmetic (and hence the parameters) cannot depend on scheduling.
ENV = {
    **{k: v for k, v in os.environ.items() if k != FAULT_VAR},
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
MODES = ("startup", "random", "write")


def freeze_config(steps: int, workdir: Path) -> Path:
    """The resolved config as a YAML file, so that every launch trains exactly the same thing
    even if the preset is edited while the loop runs."""
    path = workdir / "kill-loop.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_config(load_config(PRESET, {**OVERRIDES, "train.steps": steps})))
    return path


def train_command(config: Path, out: Path) -> list[str]:
    """``invflow train CONFIG --out OUT --resume`` (starts fresh when ``out`` has no checkpoint)."""
    return [sys.executable, "-m", "invflow", "train", str(config), "--out", str(out), "--resume"]


def temp_files(directory: Path) -> set[tuple[str, int]]:
    """(name, inode) of the checkpoint temp files in ``directory``."""
    try:
        return {(e.name, e.inode()) for e in os.scandir(directory) if e.name.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def newest_step(directory: Path) -> int:
    """Step of the newest ``step-N.pt`` file (-1 when there is none), from file names only."""
    found = step_checkpoints(directory)
    return int(found[0].stem.split("-")[1]) if found else -1


def fault_for(mode: str, resume_step: int, rng: random.Random) -> str:
    """The ``INVFLOW_FAULT`` value that kills a launch resuming at ``resume_step`` in ``mode``."""
    if mode == "startup":
        return "startup"
    if mode == "random":
        return f"after-step:{resume_step + rng.randint(1, 3)}"
    return f"checkpoint-write:{rng.randint(1, 3)}:{rng.randint(0, 50_000)}"


def kill_once(config: Path, run: Path, mode: str, rng: random.Random) -> dict:
    """Launch (or resume) the run with a fault that SIGKILLs it according to ``mode``; report what
    happened."""
    checkpoints = RunDir(run).checkpoints
    before_tmp, before_step = temp_files(checkpoints), newest_step(checkpoints)
    fault = fault_for(mode, max(before_step, 0), rng)
    started = time.monotonic()
    proc = subprocess.run(
        train_command(config, run),
        env={**ENV, FAULT_VAR: fault},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed = proc.returncode == -signal.SIGKILL
    try:
        found, error = latest_good_checkpoint(checkpoints), None
    except CheckpointError as err:  # only unreadable checkpoint files are left
        found, error = None, str(err)
    return {
        "mode": mode, "fault": fault, "killed": killed, "seconds": round(time.monotonic() - started, 3),
        "during_write": killed and bool(temp_files(checkpoints) - before_tmp),
        "checkpoint_step": None if found is None else int(found[0]["step"]),
        "checkpoint_file": None if found is None else found[1].name, "error": error,
    }


def finish(config: Path, run: Path) -> None:
    """Run (or resume) to the end without interruption."""
    done = subprocess.run(train_command(config, run), env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"training {run} failed:\n{done.stderr[-2000:]}")


def differing_tensors(reference: Path, resumed: Path) -> list[str]:
    """Names of model/EMA tensors that are not bit-identical between the two final checkpoints."""
    want = load_checkpoint_file(RunDir(reference).last_checkpoint)
    got = load_checkpoint_file(RunDir(resumed).last_checkpoint)
    if got["step"] != want["step"]:
        return [f"step {got['step']} != {want['step']}"]
    return [f"{section}.{key}" for section in ("model", "ema")
            for key, value in want[section].items() if not torch.equal(got[section][key], value)]


def kill_loop(kills: int, seed: int, steps: int, workdir: Path) -> dict:
    """Kill and resume ``kills`` times, then compare with an uninterrupted run; returns the report."""
    rng = random.Random(seed)
    started = time.monotonic()
    reference, run = workdir / "reference", workdir / "killed"
    config = freeze_config(steps, workdir)
    finish(config, reference)
    events, problems, last_step = [], [], -1
    while sum(e["killed"] for e in events) < kills:
        event = kill_once(config, run, MODES[len(events) % len(MODES)], rng)
        events.append(event)
        step = event["checkpoint_step"]
        if event["error"] or (step is None and newest_step(RunDir(run).checkpoints) >= 0):
            problems.append(f"kill {len(events)}: no readable checkpoint: {event['error']}")
        if step is not None and step < last_step:
            problems.append(
                f"kill {len(events)}: newest readable checkpoint went back from {last_step} to {step}"
            )
        last_step = max(last_step, step if step is not None else -1)
        if step == steps:
            break  # the run finished its steps before it could be killed again
    finish(config, run)
    differing = differing_tensors(reference, run)
    problems += [f"{name} differs from the uninterrupted run" for name in differing]
    problems += [
        f"stale temp file {name} left after the final run" for name, _ in temp_files(RunDir(run).checkpoints)
    ]
    killed = [e for e in events if e["killed"]]
    return {
        "preset": PRESET, "overrides": {**OVERRIDES, "train.steps": steps}, "seed": seed,
        "runs": len(events) + 1, "kills": len(killed),
        "kills_during_write": sum(e["during_write"] for e in killed),
        "kills_by_mode": {m: sum(e["mode"] == m for e in killed) for m in MODES},
        "kills_before_first_checkpoint": sum(e["checkpoint_step"] is None for e in killed),
        "bit_identical": not differing,
        "result": "pass" if not problems and len(killed) == kills else "fail",
        "problems": problems, "seconds": round(time.monotonic() - started, 1),
        "torch": torch.__version__, "events": events,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30, help="number of SIGKILLs to inflict")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 4 per kill + 30)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the JSON report")
    args = parser.parse_args(argv)
    steps = args.steps or 4 * args.kills + 30
    with tempfile.TemporaryDirectory(prefix="invflow-kill-loop-") as tmp:
        report = kill_loop(args.kills, args.seed, steps, args.workdir or Path(tmp))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'runs':<28}{report['runs']}")
    print(f"{'kills (SIGKILL)':<28}{report['kills']}  {report['kills_by_mode']}")
    print(f"{'kills during a write':<28}{report['kills_during_write']}")
    print(f"{'kills before 1st checkpoint':<28}{report['kills_before_first_checkpoint']}")
    print(f"{'final params bit-identical':<28}{report['bit_identical']}")
    print(f"{'result':<28}{report['result']}  ({report['seconds']} s)")
    for problem in report["problems"]:
        print(f"  problem: {problem}")
    print(f"wrote {args.json}")
    return 0 if report["result"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
