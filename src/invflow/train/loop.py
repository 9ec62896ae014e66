"""The training loop (docs/architecture.md section 6): one readable loop, all of a step in view.

One process by default; under ``torchrun`` the model is wrapped in DistributedDataParallel,
each process trains on its own slice of every global batch with its own RNG stream, metrics are
reduced across processes, and only rank 0 writes the run directory.
"""
from __future__ import annotations

import dataclasses
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
from invflow.data.registry import input_shape, is_toy
from invflow.models import build_model
from invflow.storage import DiskFullError, disk_full_as_error
from invflow.train import faults
from invflow.train.batches import ImageBatches, Prefetcher, ToyBatches
from invflow.train.checkpoint import latest_good_checkpoint
from invflow.train.interrupt import StopRequest, TrainingInterrupted
from invflow.train.distributed import DistContext, all_reduce_sum, barrier, init_distributed
from invflow.train.ema import make_ema, update_ema
from invflow.train.evaluate import evaluate, held_out_batches, load_split
from invflow.train.metrics import MetricsLog
from invflow.train.progress import progress_line, wants_lines
from invflow.train.run_dir import RunDir, check_same_model
from invflow.train.run_lock import RunLock
from invflow.train.sampling import write_samples_or_warn
from invflow.train.results import record_test_split, write_results
from invflow.train.state import TrainingState
from invflow.train.tensorboard import TensorBoardLog

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


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str = "constant") -> float:
    """The learning-rate multiplier of optimizer step ``step`` (0-based): a linear warm-up over
    ``warmup_steps``, then constant, or (``cosine``) decayed as ``(1 + cos(π t)) / 2`` with
    ``t`` the fraction of the steps after the warm-up that is done."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "constant" or step < warmup_steps:
        return warm
    done = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))


def _training_data(config: Config, data_dir: str | None, ctx: DistContext):
    """Training batches and the test split (``None`` for toy data); rank 0 fetches files first."""
    if is_toy(config.data):
        return ToyBatches(config.data, config.train.seed, ctx), None
    if not ctx.is_main:
        barrier(ctx)  # let rank 0 download into the cache alone
    train_data = load_split(config, "train", data_dir)
    test_data = load_split(config, "test", data_dir)
    if ctx.is_main:
        barrier(ctx)
    expected = input_shape(config.data)
    if tuple(train_data.images.shape[1:]) != expected:
        raise ValueError(f"data has shape {tuple(train_data.images.shape[1:])}, the model expects {expected}")
    return ImageBatches(train_data.images, train_data.labels, config.data, config.train.seed, ctx), test_data


def _with_data_dir(config: Config, data_dir: str | None) -> Config:
    """``config`` with its data directory made absolute, so ``invflow eval`` finds the data from anywhere."""
    if not data_dir:
        return config
    return dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=str(Path(data_dir).resolve())))


def train(config: Config, out: str | Path, resume: bool = False, data_dir: str | None = None,
          progress: bool | None = None) -> TrainResult:
    """Train ``config`` into run directory ``out``; with ``resume``, continue from its last checkpoint.


    The run directory has one writer (``RunLock``); SIGINT/SIGTERM finish the step, checkpoint and
    raise ``TrainingInterrupted``. A resumed run reuses the data directory its config recorded
    unless ``config.data.data_dir`` or ``data_dir`` names another; the one used is recorded in
    the run's config as an absolute path.
    """
    ctx, device = init_distributed(config.train.device)
    run = RunDir(out)
    lock = RunLock(run.root)
    if ctx.is_main:
        run.create()
        lock.acquire()  # before anything is read or written: a second writer is refused here
    try:
        if resume and data_dir is None and config.data.data_dir is None:
            recorded = run.recorded_data_dir()
            if recorded is not None:
                config = dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=recorded))
                if ctx.is_main:
                    print(f"using the run's recorded data directory {recorded}")
        config = _with_data_dir(config, data_dir or config.data.data_dir)
        with StopRequest() as stop:
            return _train(config, run, resume, data_dir, progress, ctx, device, stop)
    finally:
        lock.release()


def _train(config: Config, run: RunDir, resume: bool, data_dir: str | None, progress: bool | None,
           ctx: DistContext, device: torch.device, stop: StopRequest) -> TrainResult:
    tc = config.train
    if not resume and run.has_checkpoints():
        raise ValueError(f"run directory {run.root} already has checkpoints; pass --resume or another --out")
    torch.manual_seed(tc.seed + ctx.rank)  # each process draws its own noise and estimator samples
    if tc.deterministic:
        torch.use_deterministic_algorithms(True)
    source, test_data = _training_data(config, data_dir, ctx)
    batches = Prefetcher(source, config.data.num_workers, pin_memory=device.type == "cuda") \
        if config.data.num_workers > 0 else source
    model = build_model(config).to(device)
    objective = model.make_objective(config.data.n_bits)
    if tc.compile and model.compile_unsupported:
        raise ValueError(f"train.compile=true is not supported by the {config.family} family: "
                         f"{model.compile_unsupported}")
    if tc.precision != "fp32":
        if model.low_precision_unsupported:
            raise ValueError(f"train.precision={tc.precision} is not supported by the {config.family} family: "
                             f"{model.low_precision_unsupported}")
        model.set_conditioner_precision(LOW_PRECISION[tc.precision])
    _initialize(model, source, objective, device)  # ActNorm's data-dependent init (rank 0's wins under DDP)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, tc.warmup_steps, tc.steps, tc.lr_schedule))
    scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
    ema = make_ema(model, tc.ema_decay, tc.ema_schedule)
    state = TrainingState(config, model, ema, optimizer, scheduler, scaler, ctx)
    found = latest_good_checkpoint(run.checkpoints) if resume else None
    if found is not None:
        check_same_model(found.state["config"], config, found.path)
        state.load(found.state, found.path)
        if ctx.is_main:
            print(f"resuming {run.root} from {found.path.name} at step {state.step}")
    faults.check_startup()
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if ctx.enabled else model
    forward = torch.compile(net) if tc.compile else net
    if ctx.is_main:
        run.write_config(config)
        record_test_split(run.root, config.data, data_dir)
    log = MetricsLog(run.metrics, resume_step=state.step if found is not None else 0) if ctx.is_main else None
    # Events past the resumed step are purged, so a resumed run never records a step twice.
    board = TensorBoardLog(run.tensorboard, purge_step=state.step + 1) if ctx.is_main and tc.tensorboard else None
    fallbacks = found.fallbacks() if found is not None else []
    if log is not None and fallbacks:
        log.write({"step": state.step, "event": "checkpoint_fallback", "used": found.path.name, "skipped": fallbacks})

    def held_out():
        batches_ = held_out_batches(config, test_data, tc.eval_batches, ctx)
        return evaluate(ema.module, objective, batches_, device, seed=tc.seed, ctx=ctx)

    def write(record: dict) -> None:
        if log is not None:
            try:
                log.write(record)
                if board is not None:
                    with disk_full_as_error(run.tensorboard):
                        board.scalars(record)
            except DiskFullError as err:
                raise state.save_after_disk_full(run, err) from None

    def sample_grid(name: str) -> None:
        """A sample grid (and its TensorBoard image): a full disk costs the picture, not the run."""
        path = write_samples_or_warn(ema.module, config, run.samples / f"{name}.png", tc.n_samples_grid,
                                     tc.sample_temperature, seed=tc.seed)
        if board is not None and path is not None:
            try:
                with disk_full_as_error(run.tensorboard):
                    board.image("samples", state.step, path)
            except DiskFullError as err:
                warnings.warn(f"{err}; the sample image is not in TensorBoard, training goes on", RuntimeWarning)

    started, window_start, window_images = time.perf_counter(), time.perf_counter(), 0
    last_save = _clock()
    cpu_started = time.process_time()
    train_value = float("nan")
    bar = tqdm(total=tc.steps, initial=state.step, disable=True if not ctx.is_main else _no_bar(progress),
               dynamic_ncols=True, desc=config.name)
    lines = ctx.is_main and wants_lines(progress)  # a log file, not a terminal: plain lines instead of the bar
    window_step = state.step

    def save() -> Path | None:
        nonlocal last_save
        path = state.save(run)
        last_save = _clock()
        return path

    def stop_here() -> None:
        """Checkpoint the finished step and stop (``TrainingInterrupted``)."""
        bar.close()
        path = save()
        if board is not None:
            board.close()
        raise TrainingInterrupted(stop.signum, state.step, path)

    model.train()
    while state.step < tc.steps:
        if stop.requested and not ctx.enabled:
            stop_here()  # a signal during evaluation or sampling: no need to take another step first
        step = state.step
        batch = batches.batch(step).to(device)
        loss, stats = objective.loss(model, batch, forward)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip or math.inf)
        # Gradients are already averaged over processes; the loss, a stop request and the wall clock
        # are local, so agree on them in one reduction.
        clock_due = tc.checkpoint_minutes is not None and _clock() - last_save >= 60 * tc.checkpoint_minutes
        flags = all_reduce_sum(torch.tensor([float(not (torch.isfinite(loss) and torch.isfinite(grad_norm))),
                                             float(stop.requested), float(clock_due)]), ctx)
        bad, stopping, clock_due = (bool(f > 0) for f in flags)
        state.step += 1
        faults.check_after_step(state.step)
        bar.update(1)
        if bad:
            state.nonfinite += 1  # skip the update: a non-finite step must never reach the weights
            scaler.update()
            write({"step": state.step, "split": "train", "nonfinite": state.nonfinite})
            if state.nonfinite > tc.max_nonfinite:
                raise TrainingDiverged(
                    f"stopping: {state.nonfinite} non-finite losses or gradients (train.max_nonfinite="
                    f"{tc.max_nonfinite}); lower train.lr, raise train.warmup_steps or set train.grad_clip"
                )
        else:
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            model.after_optimizer_step()
            if not bool(torch.isfinite(torch.stack(torch._foreach_norm(list(model.parameters())))).all()):
                raise TrainingDiverged(f"stopping at step {state.step}: the update made weights non-finite although "
                                       "the loss and gradients were finite; lower train.lr or set train.grad_clip")
            update_ema(ema, model)
            window_images += batch.x.shape[0] * ctx.world_size
            if state.step % tc.log_every == 0 or state.step == tc.steps:
                elapsed = time.perf_counter() - window_start
                names = sorted(stats)
                reduced = all_reduce_sum(torch.stack([stats[k].detach().float().cpu() for k in names]), ctx)
                means = {k: float(v) / ctx.world_size for k, v in zip(names, reduced)}
                train_value = means[objective.metric]
                rate = window_images / elapsed if elapsed > 0 else float("nan")
                write({"step": state.step, "split": "train", **means, "lr": scheduler.get_last_lr()[0],
                       "grad_norm": float(grad_norm), "images_per_s": rate,
                       "elapsed_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu_started,
                       "nonfinite": state.nonfinite, **model.training_stats()})
                bar.set_postfix({objective.metric: f"{train_value:.3f}", "img/s": f"{rate:.0f}"})
                if lines:
                    print(progress_line(config.name, state.step, tc.steps, objective.metric, train_value, rate,
                                        elapsed / max(state.step - window_step, 1)), flush=True)
                window_start, window_images, window_step = time.perf_counter(), 0, state.step
        if stopping and state.step < tc.steps:
            stop_here()
        if bad or state.step >= tc.steps:
            continue
        if state.step % tc.eval_every == 0:
            result = held_out()
            write({"step": state.step, "split": "test", **result.as_dict()})
            if ctx.is_main:
                bar.write(f"step {state.step}: test {result}")
        if state.step % tc.sample_every == 0 and ctx.is_main:
            sample_grid(f"step-{state.step:08d}")
        if state.step % tc.checkpoint_every == 0 or clock_due:
            save()
    bar.close()
    if isinstance(batches, Prefetcher):
        batches.close()
    state.save(run)
    result = held_out()
    write({"step": state.step, "split": "test", **result.as_dict()})
    if ctx.is_main:
        sample_grid("final")
    if board is not None:
        board.close()
    best = write_results(run.root, run.metrics, objective.metric)["best"] if ctx.is_main else None
    best = best or {"value": float("nan"), "step": -1}  # no finite evaluation (or not rank 0)
    barrier(ctx)
    return TrainResult(run.root, state.step, objective.metric, train_value, result.mean, result.stderr,
                       state.nonfinite, time.perf_counter() - started, model, fallbacks, best["value"], best["step"])


@torch.no_grad()
def _initialize(model, batches, objective, device: torch.device) -> None:
    """Data-dependent initialisation (ActNorm) from the first training batch, in its own RNG fork."""
    batch = batches.batch(0)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        objective.loss(model, batch.to(device))


def _no_bar(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
