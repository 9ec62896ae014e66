"""The parts of one training run (docs/architecture.md section 6): set-up, one optimizer step,
the periodic work (log, evaluate, sample, checkpoint) and teardown. ``invflow.train.loop.train``
runs them; each part reads at once."""
from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.data.held_out import HeldOutSet
from invflow.models import build_model
from invflow.storage import DiskFullError, disk_full_as_error
from invflow.train import faults
from invflow.train.batches import Prefetcher
from invflow.train.checkpoint import latest_good_checkpoint
from invflow.train.distributed import DistContext, all_reduce_sum, barrier
from invflow.train.ema import averaged_model, make_ema, update_ema
from invflow.train.evaluate import EvalResult, evaluate, held_out_batches
from invflow.train.interrupt import StopRequest, TrainingInterrupted
from invflow.train.metrics import MetricsLog
from invflow.train.optimizer import make_adam
from invflow.train.progress import show_progress_line, wants_lines
from invflow.train.results import record_held_out, write_results
from invflow.train.resume_changes import apply_schedule, train_changes
from invflow.train.run_dir import RunDir, check_same_model, with_defaults
from invflow.train.sampling import write_samples_or_warn
from invflow.train.state import TrainingState
from invflow.train.tensorboard import TensorBoardLog

LOG = logging.getLogger(__name__)  # the CLI shows these; a library caller's logging decides

_clock = time.monotonic  # the wall clock of train.checkpoint_minutes (a test replaces it)
LOW_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingDiverged(RuntimeError):
    """Too many non-finite losses or gradients."""


@dataclass
class TrainResult:
    """What a finished run reports."""

    run_dir: Path
    step: int
    metric: str
    train_value: float
    test_value: float
    test_stderr: float
    nonfinite: int
    seconds: float
    model: FlowModel = field(repr=False, default=None)
    checkpoint_fallbacks: list[str] = field(default_factory=list)
    best_test_value: float = float("nan")  # the best periodic test evaluation (results.json)
    best_test_step: int = -1


@dataclass
class StepOutcome:
    """What one step decided, agreed across processes: skipped as non-finite, a stop was
    requested, the checkpoint clock is due."""

    bad: bool
    stopping: bool
    clock_due: bool


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str = "constant") -> float:
    """The learning-rate multiplier of optimizer step ``step`` (0-based): a linear warm-up over
    ``warmup_steps``, then constant, or (``cosine``) decayed as ``(1 + cos(π t)) / 2`` with
    ``t`` the fraction of the steps after the warm-up that is done."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "constant" or step < warmup_steps:
        return warm
    done = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))


def build_for_training(config: Config, device: torch.device) -> FlowModel:
    """The model on ``device``, refusing what its family does not support (its hooks say why)."""
    train_cfg = config.train
    model = build_model(config).to(device)
    if train_cfg.compile and model.compile_unsupported:
        raise ValueError(f"train.compile=true is not supported by the {config.family} family: "
                         f"{model.compile_unsupported}")
    if train_cfg.precision != "fp32":
        if model.low_precision_unsupported:
            raise ValueError(
                f"train.precision={train_cfg.precision} is not supported by the {config.family} family: "
                f"{model.low_precision_unsupported}"
            )
        model.set_conditioner_precision(LOW_PRECISION[train_cfg.precision])
    return model


@torch.no_grad()
def initialize(model: FlowModel, batches, objective, device: torch.device) -> None:
    """Data-dependent initialisation (ActNorm) from the first training batch, in its own RNG fork."""
    batch = batches.batch(0)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        objective.loss(model, batch.to(device))


class TrainingSession:
    """One run's model, optimizer, logs and clocks, and the parts of the loop that use them."""

    def __init__(self, config: Config, run: RunDir, source, test_data, world: DistContext,
                 device: torch.device, stop: StopRequest, held_out: HeldOutSet | None = None) -> None:
        self.config, self.train_cfg, self.run, self.world, self.device, self.stop = (
            config,
            config.train,
            run,
            world,
            device,
            stop,
        )
        self.source, self.test_data, self.held_out_set = source, test_data, held_out
        self.batches = Prefetcher(source, config.data.num_workers, pin_memory=device.type == "cuda") \
            if config.data.num_workers > 0 else source
        self.log: MetricsLog | None = None
        self.board: TensorBoardLog | None = None
        self.bar = None

    def set_up(self, resume: bool, data_dir: str | None, progress: bool | None) -> None:
        """Model, objective, optimizer, EMA, the checkpoint to resume from, the wrapped forward, logs."""
        train_cfg, world = self.train_cfg, self.world
        self.model = build_for_training(self.config, self.device)
        self.objective = self.model.make_objective(self.config.data.n_bits)
        initialize(self.model, self.source, self.objective, self.device)  # rank 0's init wins under DDP
        self.optimizer = make_adam(self.model.parameters(), train_cfg.lr, train_cfg.weight_decay, self.device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(step, train_cfg.warmup_steps, train_cfg.steps, train_cfg.lr_schedule))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=train_cfg.precision == "fp16")
        self.ema = make_ema(self.model, train_cfg.ema_decay, train_cfg.ema_schedule)
        self.state = TrainingState(self.config, self.model, self.ema, self.optimizer, self.scheduler,
                                   self.scaler, world)
        found = self._resume() if resume else None
        faults.check_startup()
        net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                      else None) if world.enabled else self.model
        self.forward = self.model.compile_for_training(net) if train_cfg.compile else net
        self._open_logs(found, data_dir)
        self._start_clocks(progress)

    def _resume(self):
        found = latest_good_checkpoint(self.run.checkpoints)
        if found is not None:
            self.run.check_belongs(found.state, found.path)
            check_same_model(found.state["config"], self.config, found.path)
            changes = train_changes(with_defaults(found.state["config"]), self.config)
            self.state.load(found.state, found.path)
            if self.world.is_main:
                LOG.info(f"resuming {self.run.root} from {found.path.name} at step {self.state.step}")
            if changes:
                apply_schedule(self.optimizer, self.scheduler, self.config, self.scheduler.last_epoch)
                if self.world.is_main:
                    self.run.record_changes(self.state.step, changes)
                    LOG.info("changed from step " + f"{self.state.step}: " + ", ".join(
                        f"train.{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
        return found

    def _open_logs(self, found, data_dir: str | None) -> None:
        """Rank 0 writes the config, metrics.jsonl and TensorBoard; a resumed run never records a
        step twice (TensorBoard events past the resumed step are purged)."""
        self.fallbacks = found.fallbacks() if found is not None else []
        if not self.world.is_main:
            return
        self.run.write_config(self.config)
        if self.held_out_set is not None and self.held_out_set.path is None:  # never rewrite a record
            self.held_out_set = record_held_out(self.run.root, self.held_out_set, self.config.data, data_dir)
        self.log = MetricsLog(self.run.metrics, resume_step=self.state.step if found is not None else 0)
        if self.train_cfg.tensorboard:
            self.board = TensorBoardLog(self.run.tensorboard, purge_step=self.state.step + 1)
        if self.fallbacks:
            self.log.write({"step": self.state.step, "event": "checkpoint_fallback", "used": found.path.name,
                            "skipped": self.fallbacks})

    def _start_clocks(self, progress: bool | None) -> None:
        self.started = self.window_start = time.perf_counter()
        self.cpu_started = time.process_time()
        self.last_save = _clock()
        self.window_images, self.window_step = 0, self.state.step
        self.train_value = float("nan")
        self.bar = tqdm(
            total=self.train_cfg.steps,
            initial=self.state.step,
            dynamic_ncols=True,
            desc=self.config.name,
            disable=True if not self.world.is_main else (None if progress is None else not progress),
        )
        self.lines = self.world.is_main and wants_lines(progress)  # a log file: plain lines, not the bar

    # ------------------------------------------------------------------------------------ one step
    def step(self) -> StepOutcome:
        """Forward, backward, clipping, a non-finite check agreed across processes, then the update
        (or, for a non-finite step, no update at all)."""
        train_cfg, world, state = self.train_cfg, self.world, self.state
        batch = self.batches.batch(state.step).to(self.device)
        loss, stats = self.objective.loss(self.model, batch, self.forward)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), train_cfg.grad_clip or math.inf)
        # Gradients are already averaged over processes; the loss, a stop request and the wall clock
        # are local, so agree on them in one reduction.
        minutes = train_cfg.checkpoint_minutes
        clock_due = minutes is not None and _clock() - self.last_save >= 60 * minutes
        flags = all_reduce_sum(torch.tensor([float(not (torch.isfinite(loss) and torch.isfinite(grad_norm))),
                                             float(self.stop.requested), float(clock_due)]), world)
        outcome = StepOutcome(*(bool(f > 0) for f in flags))
        state.step += 1
        faults.check_after_step(state.step)
        self.bar.update(1)
        if outcome.bad:
            self._skip_nonfinite()
        else:
            self._update(batch.x.shape[0])
            if state.step % train_cfg.log_every == 0 or state.step == train_cfg.steps:
                self._log_train(stats, grad_norm)
        return outcome

    def _skip_nonfinite(self) -> None:
        """A non-finite step must never reach the weights: count it, stop after too many."""
        self.state.nonfinite += 1
        self.scaler.update()
        self.write({"step": self.state.step, "split": "train", "nonfinite": self.state.nonfinite})
        if self.state.nonfinite > self.train_cfg.max_nonfinite:
            raise TrainingDiverged(
                f"stopping: {self.state.nonfinite} non-finite losses or gradients (train.max_nonfinite="
                f"{self.train_cfg.max_nonfinite}); lower train.lr, raise train.warmup_steps or set "
                "train.grad_clip"
            )

    def _update(self, images: int) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.model.after_optimizer_step()
        if not bool(torch.isfinite(torch.stack(torch._foreach_norm(list(self.model.parameters())))).all()):
            raise TrainingDiverged(f"stopping at step {self.state.step}: the update made weights non-finite "
                                   "although the loss and gradients were finite; lower train.lr or set "
                                   "train.grad_clip")
        update_ema(self.ema, self.model)
        self.window_images += images * self.world.world_size

    def _log_train(self, stats: dict[str, torch.Tensor], grad_norm: torch.Tensor) -> None:
        """The training record (means over processes), the bar or a progress line."""
        elapsed = time.perf_counter() - self.window_start
        names = sorted(stats)
        reduced = all_reduce_sum(torch.stack([stats[k].detach().float().cpu() for k in names]), self.world)
        means = {k: float(v) / self.world.world_size for k, v in zip(names, reduced)}
        metric = self.objective.metric
        self.train_value = means[metric]
        rate = self.window_images / elapsed if elapsed > 0 else float("nan")
        self.write(
            {
                "step": self.state.step,
                "split": "train",
                **means,
                "lr": self.scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "images_per_s": rate,
                "elapsed_s": time.perf_counter() - self.started,
                "cpu_s": time.process_time() - self.cpu_started,
                "nonfinite": self.state.nonfinite,
                **self.model.training_stats(),
            }
        )
        self.bar.set_postfix({metric: f"{self.train_value:.3f}", "img/s": f"{rate:.0f}"})
        if self.lines:
            seconds_per_step = elapsed / max(self.state.step - self.window_step, 1)
            show_progress_line(self.config.name, self.state.step, self.train_cfg.steps, metric,
                               self.train_value, rate, seconds_per_step)
        self.window_start, self.window_images, self.window_step = time.perf_counter(), 0, self.state.step

    # ------------------------------------------------------------------------------ periodic work
    def periodic(self, clock_due: bool) -> None:
        """Evaluate, write a sample grid and checkpoint when their step (or the clock) says so."""
        step, train_cfg = self.state.step, self.train_cfg
        if step % train_cfg.eval_every == 0:
            result = self.held_out()
            self.write({"step": step, "split": "test", **result.as_dict()})
            if self.world.is_main:
                self.bar.write(f"step {step}: test {result}")
        if step % train_cfg.sample_every == 0 and self.world.is_main:
            self.sample_grid(f"step-{step:08d}")
        if step % train_cfg.checkpoint_every == 0 or clock_due:
            self.save()

    def held_out(self) -> EvalResult:
        """The EMA model on the held-out batches."""
        batches = held_out_batches(self.config, self.test_data, self.train_cfg.eval_batches, self.world)
        return evaluate(
            averaged_model(self.ema), self.objective, batches, self.device, seed=self.train_cfg.seed,
            world=self.world)

    def write(self, record: dict) -> None:
        """A metrics record (and its TensorBoard scalars), rank 0 only; a full disk checkpoints first."""
        if self.log is None:
            return
        try:
            self.log.write(record)
            if self.board is not None:
                with disk_full_as_error(self.run.tensorboard):
                    self.board.scalars(record)
        except DiskFullError as err:
            raise self.state.save_after_disk_full(self.run, err) from None

    def sample_grid(self, name: str) -> None:
        """A sample grid (and its TensorBoard image): a full disk costs the picture, not the run."""
        train_cfg = self.train_cfg
        path = write_samples_or_warn(averaged_model(self.ema), self.config,
                                     self.run.samples / f"{name}.png", train_cfg.n_samples_grid,
                                     train_cfg.sample_temperature, seed=train_cfg.seed)
        if self.board is None or path is None:
            return
        try:
            with disk_full_as_error(self.run.tensorboard):
                self.board.image("samples", self.state.step, path)
        except DiskFullError as err:
            warnings.warn(f"{err}; the sample image is not in TensorBoard, training goes on", RuntimeWarning,
                          stacklevel=2)

    def save(self) -> Path | None:
        path = self.state.save(self.run)
        self.last_save = _clock()
        return path

    # ----------------------------------------------------------------------------------- teardown
    def stop_here(self) -> None:
        """Checkpoint the finished step and stop (``TrainingInterrupted``)."""
        self.bar.close()
        path = self.save()
        if self.board is not None:
            self.board.close()
        raise TrainingInterrupted(self.stop.signum, self.state.step, path)

    def finish(self) -> TrainResult:
        """Last checkpoint, final evaluation and sample grid, results.json; the run's report."""
        self.bar.close()
        self.state.save(self.run)
        result = self.held_out()
        self.write({"step": self.state.step, "split": "test", **result.as_dict()})
        if self.world.is_main:
            self.sample_grid("final")
        if self.board is not None:
            self.board.close()
        best = write_results(self.run.root, self.run.metrics, self.objective.metric)["best"] \
            if self.world.is_main else None
        best = best or {"value": float("nan"), "step": -1}  # no finite evaluation (or not rank 0)
        barrier(self.world)
        return TrainResult(
            self.run.root,
            self.state.step,
            self.objective.metric,
            self.train_value,
            result.mean,
            result.stderr,
            self.state.nonfinite,
            time.perf_counter() - self.started,
            self.model,
            self.fallbacks,
            best["value"],
            best["step"],
        )

    def close(self) -> None:
        """Release what runs beside the loop (the prefetching thread, the bar), on any exit."""
        if isinstance(self.batches, Prefetcher):
            self.batches.close()
        if self.bar is not None:
            self.bar.close()
