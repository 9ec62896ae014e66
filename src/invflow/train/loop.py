"""The training loop (DESIGN.md section 6): one readable loop, everything a step does in view."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.models import build_model, input_shape, is_toy
from invflow.train.batches import ImageBatches, ToyBatches
from invflow.train.checkpoint import write_run_checkpoint, latest_good_checkpoint
from invflow.train.ema import make_ema, update_ema
from invflow.train.evaluate import evaluate, held_out_batches, load_split, make_objective
from invflow.train.metrics import MetricsLog
from invflow.train.run_dir import RunDir, check_same_model
from invflow.train.sampling import write_samples


class TrainingDiverged(RuntimeError):
    """Too many non-finite losses or gradients."""


def select_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _warmup(warmup_steps: int):
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def train(config: Config, out: str | Path, resume: bool = False, data_dir: str | None = None,
          progress: bool | None = None) -> TrainResult:
    """Train ``config`` into run directory ``out``; with ``resume``, continue from its last checkpoint."""
    tc = config.train
    run = RunDir(out)
    if not resume and latest_good_checkpoint_exists(run):
        raise ValueError(f"run directory {run.root} already has checkpoints; pass --resume or another --out")
    run.create()
    torch.manual_seed(tc.seed)
    if tc.deterministic:
        torch.use_deterministic_algorithms(True)
    device = select_device(tc.device)

    toy = is_toy(config.data)
    test_data = None
    if toy:
        batches = ToyBatches(config.data, tc.seed)
    else:
        train_data = load_split(config, "train", data_dir)
        test_data = load_split(config, "test", data_dir)
        expected = input_shape(config.data)
        if tuple(train_data.images.shape[1:]) != expected:
            raise ValueError(f"data has shape {tuple(train_data.images.shape[1:])}, the model expects {expected}")
        batches = ImageBatches(train_data.images, train_data.labels, config.data, tc.seed)
    objective = make_objective(config)

    model = build_model(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup(tc.warmup_steps))
    step, nonfinite = 0, 0
    found = latest_good_checkpoint(run.checkpoints) if resume else None
    if found is not None:
        state, path = found
        check_same_model(state["config"], config, path)
        _initialize(model, batches, objective, device)  # build lazily created state before loading
        model.load_state_dict(state["model"])
        ema = make_ema(model, tc.ema_decay)
        ema.module.load_state_dict(state["ema"])
        ema.n_averaged.fill_(state["ema_n_averaged"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        step, nonfinite = state["step"], state["nonfinite"]
        print(f"resuming {run.root} from {path.name} at step {step}")
    else:
        _initialize(model, batches, objective, device)
        ema = make_ema(model, tc.ema_decay)
    run.write_config(config)
    log = MetricsLog(run.metrics, resume_step=step if found is not None else 0)

    def checkpoint() -> None:
        write_run_checkpoint({
            "config": config.to_dict(), "step": step, "model": model.state_dict(),
            "ema": ema.module.state_dict(), "ema_n_averaged": int(ema.n_averaged),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": _rng_state(), "nonfinite": nonfinite,
        }, run.checkpoints, tc.keep_checkpoints)

    def held_out() -> object:
        batches_ = held_out_batches(config, test_data, tc.eval_batches)
        return evaluate(ema.module, objective, batches_, device, seed=tc.seed)

    started, window_start, window_images = time.perf_counter(), time.perf_counter(), 0
    train_value = float("nan")
    bar = tqdm(total=tc.steps, initial=step, disable=_no_bar(progress), dynamic_ncols=True, desc=config.name)
    model.train()
    while step < tc.steps:
        batch = batches.batch(step)
        x = batch.x.to(device, non_blocking=True)
        loss, stats = objective.loss(model, type(batch)(x, batch.y.to(device)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip or math.inf)
        if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
            nonfinite += 1  # skip the update: a non-finite step must never reach the weights
            log.write({"step": step, "split": "train", "nonfinite": nonfinite})
            if nonfinite > tc.max_nonfinite:
                raise TrainingDiverged(
                    f"stopping: {nonfinite} non-finite losses or gradients (train.max_nonfinite="
                    f"{tc.max_nonfinite}); lower train.lr, raise train.warmup_steps or set train.grad_clip"
                )
            step += 1
            bar.update(1)
            continue
        optimizer.step()
        scheduler.step()
        model.after_optimizer_step()
        update_ema(ema, model)
        step += 1
        window_images += x.shape[0]
        bar.update(1)
        if step % tc.log_every == 0 or step == tc.steps:
            elapsed = time.perf_counter() - window_start
            train_value = float(stats[objective.metric])
            rate = window_images / elapsed if elapsed > 0 else float("nan")
            log.write({"step": step, "split": "train", objective.metric: train_value, "lr": scheduler.get_last_lr()[0],
                       "grad_norm": float(grad_norm), "images_per_s": rate, "nonfinite": nonfinite,
                       **model.training_stats()})
            bar.set_postfix({objective.metric: f"{train_value:.3f}", "img/s": f"{rate:.0f}"})
            window_start, window_images = time.perf_counter(), 0
        if step % tc.eval_every == 0 and step < tc.steps:
            result = held_out()
            log.write({"step": step, "split": "test", **result.as_dict()})
            bar.write(f"step {step}: test {result}")
        if step % tc.sample_every == 0 and step < tc.steps:
            write_samples(ema.module, config, run.samples / f"step-{step:08d}.png", tc.n_samples_grid,
                          tc.sample_temperature, seed=tc.seed)
        if step % tc.checkpoint_every == 0 and step < tc.steps:
            checkpoint()
    bar.close()
    checkpoint()
    result = held_out()
    log.write({"step": step, "split": "test", **result.as_dict()})
    write_samples(ema.module, config, run.samples / "final.png", tc.n_samples_grid, tc.sample_temperature,
                  seed=tc.seed)
    return TrainResult(run.root, step, objective.metric, train_value, result.mean, result.stderr, nonfinite,
                       time.perf_counter() - started)


def latest_good_checkpoint_exists(run: RunDir) -> bool:
    return run.checkpoints.is_dir() and any(run.checkpoints.glob("*.pt"))


@torch.no_grad()
def _initialize(model: FlowModel, batches, objective, device: torch.device) -> None:
    """Data-dependent initialisation (ActNorm) from the first training batch, in its own RNG fork."""
    batch = batches.batch(0)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        objective.loss(model, type(batch)(batch.x.to(device), batch.y.to(device)))


def _no_bar(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
