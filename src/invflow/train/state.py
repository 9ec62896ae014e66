"""Everything a resumed run needs, packed into and restored from a checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from invflow.config import Config
from invflow.storage import RESUME_HINT, DiskFullError
from invflow.train.checkpoint import CheckpointError, write_run_checkpoint
from invflow.train.distributed import DistContext, all_gather_objects
from invflow.train.ema import averaged_model


def rng_state() -> dict[str, Any]:
    """This process's RNG states (CPU, and CUDA where present)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainingState:
    """Model, EMA, optimizer, scheduler, grad scaler, step and counters of one run."""

    def __init__(self, config: Config, model, ema, optimizer, scheduler, scaler, world: DistContext) -> None:
        self.config, self.model, self.ema = config, model, ema
        self.optimizer, self.scheduler, self.scaler, self.world = optimizer, scheduler, scaler, world
        self.step = 0
        self.nonfinite = 0

    def save(self, run) -> Path | None:
        """Checkpoint (rank 0 writes and gets the file's path; every rank contributes its RNG state)."""
        rngs = all_gather_objects(rng_state(), self.world)
        if not self.world.is_main:
            return None
        return write_run_checkpoint({
            "config": self.config.to_dict(), "step": self.step, "model": self.model.state_dict(),
            "ema": averaged_model(self.ema).state_dict(), "ema_n_averaged": int(self.ema.n_averaged),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rngs, "nonfinite": self.nonfinite,
            "run_id": run.run_id(),
        }, run.checkpoints, self.config.train.keep_checkpoints)

    def save_after_disk_full(self, run, err: DiskFullError) -> DiskFullError:
        """After a write failed for lack of space: checkpoint first if the disk takes it (one
        process only: under DDP a lone rank cannot gather the others' states), and return the
        error saying what is on disk."""
        if self.world.enabled:
            return err.with_detail(f"the newest checkpoint on disk is intact; {RESUME_HINT}")
        try:
            self.save(run)
        except DiskFullError:
            return err.with_detail(
                f"step {self.step} could not be checkpointed either, the older checkpoints are intact; "
                f"{RESUME_HINT}"
            )
        return err.with_detail(
            f"the training state of step {self.step} was checkpointed first; {RESUME_HINT}"
        )

    def load(self, saved: dict[str, Any], path: Path) -> None:
        """Restore from a verified checkpoint; this process takes its own RNG state."""
        rngs = saved["rng"]
        if len(rngs) != self.world.world_size:
            raise CheckpointError(
                f"{path}: written by {len(rngs)} process(es), resumed with {self.world.world_size}; "
                "resume with the same --nproc_per_node"
            )
        self.model.load_state_dict(saved["model"])
        self.ema.module.load_state_dict(saved["ema"])
        self.ema.n_averaged.fill_(saved["ema_n_averaged"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        set_rng_state(rngs[self.world.rank])
        self.step, self.nonfinite = saved["step"], saved["nonfinite"]
