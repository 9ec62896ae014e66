"""The training loop (docs/architecture.md section 6): one readable loop, all of a step in view.

One process by default; under ``torchrun`` the model is wrapped in DistributedDataParallel,
each process trains on its own slice of every global batch with its own RNG stream, metrics are
reduced across processes, and only rank 0 writes the run directory. The parts of a run (set-up,
one step, periodic work, teardown) are ``TrainingSession``'s methods (``train/session.py``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from invflow.config import Config
from invflow.data.registry import input_shape, is_toy
from invflow.data.splits import load_split, run_held_out_set
from invflow.train.batches import ImageBatches, ToyBatches
from invflow.train.distributed import DistContext, barrier, init_distributed
from invflow.train.heap import retain_freed_memory
from invflow.train.interrupt import StopRequest
from invflow.train.run_dir import RunDir
from invflow.train.run_lock import RunLock
from invflow.train.session import TrainingDiverged, TrainingSession, TrainResult, lr_factor

LOG = logging.getLogger(__name__)  # the CLI shows these; a library caller's logging decides

__all__ = ["TrainResult", "TrainingDiverged", "lr_factor", "train"]


def _training_data(config: Config, data_dir: str | None, world: DistContext, run: RunDir):
    """Training batches, the test split (``None`` for toy data) and an image folder's held-out set
    (the run's record, or chosen now for a new run); rank 0 fetches files first."""
    if is_toy(config.data):
        return ToyBatches(config.data, config.train.seed, world), None, None
    if not world.is_main:
        barrier(world)  # let rank 0 download into the cache alone
    held = run_held_out_set(config, run.root, data_dir, announce_missing=run.has_checkpoints())
    if held is not None and held.path is not None:  # a recorded set first: a missing file is named as such
        test_data = load_split(config, "test", data_dir, held)
        train_data = load_split(config, "train", data_dir, held)
    else:
        train_data = load_split(config, "train", data_dir)
        test_data = load_split(config, "test", data_dir)
    if world.is_main:
        barrier(world)
    expected = input_shape(config.data)
    if tuple(train_data.images.shape[1:]) != expected:
        raise ValueError(f"data has shape {tuple(train_data.images.shape[1:])}, the model expects {expected}")
    batches = ImageBatches(train_data.images, train_data.labels, config.data, config.train.seed, world)
    return batches, test_data, held


def _with_data_dir(config: Config, data_dir: str | None) -> Config:
    """``config`` with its data directory made absolute, so ``invflow eval`` finds the data from anywhere."""
    if not data_dir:
        return config
    return dataclasses.replace(
        config, data=dataclasses.replace(config.data, data_dir=str(Path(data_dir).resolve()))
    )


def train(config: Config, out: str | Path, resume: bool = False, data_dir: str | None = None,
          progress: bool | None = None) -> TrainResult:
    """Train ``config`` into run directory ``out``; with ``resume``, continue from its last checkpoint.


    The run directory has one writer (``RunLock``); SIGINT/SIGTERM finish the step, checkpoint and
    raise ``TrainingInterrupted``. With ``train.retain_freed_memory`` (the default) the process's
    allocator keeps freed memory for reuse from here on (``invflow.train.heap``). A resumed run
    reuses the data directory its config recorded unless ``config.data.data_dir`` or ``data_dir``
    names another; the one used is recorded in the run's config as an absolute path.
    """
    world, device = init_distributed(config.train.device)
    run = RunDir(out)
    lock = RunLock(run.root)
    if world.is_main:
        run.create()
        lock.acquire()  # before anything is read or written: a second writer is refused here
    try:
        if resume and data_dir is None and config.data.data_dir is None:
            recorded = run.recorded_data_dir()
            if recorded is not None:
                config = dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=recorded))
                if world.is_main:
                    LOG.info(f"using the run's recorded data directory {recorded}")
        config = _with_data_dir(config, data_dir or config.data.data_dir)
        if config.train.retain_freed_memory:
            retain_freed_memory()
        with StopRequest() as stop, intra_op_threads(config.train.threads):
            return _train(config, run, resume, data_dir, progress, world, device, stop)
    finally:
        lock.release()


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the run, restored after (``None``: leave torch's).
    Tiny models are faster on one thread: the per-operation cost of waking a second thread is
    larger than the work, and on a loaded machine each operation waits for the busier core."""
    before = torch.get_num_threads()
    cores = os.cpu_count() or 1
    if threads is not None and threads > cores:
        warnings.warn(f"train.threads={threads} is more than this machine's {cores} cores; using {cores}",
                      RuntimeWarning, stacklevel=2)
        threads = cores
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(config: Config, run: RunDir, resume: bool, data_dir: str | None, progress: bool | None,
           world: DistContext, device: torch.device, stop: StopRequest) -> TrainResult:
    """Set up, step until ``train.steps`` with the periodic work after each step, tear down."""
    train_cfg = config.train
    if not resume and run.has_checkpoints():
        raise ValueError(f"run directory {run.root} already has checkpoints; pass --resume or another --out")
    torch.manual_seed(train_cfg.seed + world.rank)  # each process draws its own noise and estimator samples
    if train_cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    source, test_data, held = _training_data(config, data_dir, world, run)
    session = TrainingSession(config, run, source, test_data, world, device, stop, held)
    try:
        session.set_up(resume, data_dir, progress)
        session.model.train()
        while session.state.step < train_cfg.steps:
            if stop.requested and not world.enabled:
                session.stop_here()  # a signal during evaluation or sampling: no need to take another step
            outcome = session.step()
            if outcome.stopping and session.state.step < train_cfg.steps:
                session.stop_here()
            if not outcome.bad and session.state.step < train_cfg.steps:
                session.periodic(outcome.clock_due)
        return session.finish()
    finally:
        session.close()
