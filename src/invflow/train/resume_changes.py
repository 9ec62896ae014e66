"""Which ``train`` settings a ``--resume`` may change, applied from the resumed step on.

Model and data changes are refused by ``run_dir.check_same_model``. Of the ``train`` section:

- the optimisation schedule (``lr``, ``lr_schedule``, ``warmup_steps``, ``steps``,
  ``weight_decay``) is *applied*: the optimizer and scheduler restored from the checkpoint carry
  the old base learning rate and weight decay, so they are rewritten here (the schedule's factor
  is read from the config at every step);
- settings read afresh where they are used (``grad_clip``, the cadences of logs, evaluations,
  samples and checkpoints, ``max_nonfinite``, threads, device, ``compile``, the allocator setting,
  TensorBoard, the sample grid) take effect by themselves;
- every other key (``seed``, the EMA, ``precision``, ``deterministic``) would make the resumed
  run a different one, and is refused by name.

Each change is recorded in ``RUN/changes.jsonl`` with the step from which it holds, so the run's
``config.yaml`` (its final settings) and that log together say what ran.
"""
from __future__ import annotations

from typing import Any

from invflow.config import Config

APPLIED = ("lr", "lr_schedule", "warmup_steps", "steps", "weight_decay")
FREE = ("grad_clip", "eval_every", "eval_batches", "sample_every", "checkpoint_every", "checkpoint_minutes",
        "keep_checkpoints", "log_every", "max_nonfinite", "device", "compile", "threads",
        "retain_freed_memory", "n_samples_grid", "sample_temperature", "tensorboard")


def train_changes(saved: dict[str, Any], config: Config) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` of the ``train`` settings a resume changes; a ``ValueError`` naming the
    first change a resume may not make."""
    old, new = saved.get("train", {}), config.to_dict()["train"]
    changes = {key: (old[key], new[key]) for key in new if key in old and old[key] != new[key]}
    for key, (before, after) in changes.items():
        if key not in APPLIED + FREE:
            raise ValueError(f"--resume cannot change train.{key} ({before!r} -> {after!r}): the resumed "
                             f"run would be another run; start a new --out, or resume with "
                             f"train.{key}={before!r}")
    return changes


def apply_schedule(optimizer, scheduler, config: Config, step: int) -> None:
    """Give the restored optimizer and scheduler the config's base learning rate and weight decay,
    and the learning rate the schedule gives at ``step``."""
    train_cfg = config.train
    scheduler.base_lrs = [train_cfg.lr] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, [f(step) for f in scheduler.lr_lambdas]):
        group["initial_lr"] = train_cfg.lr
        group["weight_decay"] = train_cfg.weight_decay
        group["lr"] = train_cfg.lr * factor
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
