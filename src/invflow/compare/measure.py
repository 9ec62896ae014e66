"""Cost measurements of a trained run: parameters, sampling time, peak memory of one training step."""
from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from invflow.api import load_model
from invflow.compare.memory import PeakTensorMemory
from invflow.config import Config
from invflow.core.context import ContextSpec
from invflow.core.model import FlowModel
from invflow.core.nonfinite import NonFiniteSamples
from invflow.data.registry import is_toy
from invflow.data.splits import data_provenance
from invflow.train.batches import Batch, derived_generator
from invflow.train.distributed import select_device
from invflow.train.metrics import read_metrics
from invflow.train.run_dir import RunDir, versions

SAMPLES_TIMED = 64


def parameter_count(model: torch.nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_sampling(
    model: FlowModel, n: int, device: torch.device, seed: int = 0
) -> tuple[float, float | None]:
    """Seconds for one ``model.sample(n)`` in eval mode, and the mean fixed-point iteration count
    per residual block of that inverse (``None`` for models whose inverse is closed-form)."""
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        _synchronize(device)
        start = time.perf_counter()
        try:
            model.sample(n, context=None if model.context_spec is None else model.context_spec.example(n))
        except NonFiniteSamples as err:  # the time is still the time; the problem is reported
            warnings.warn(str(err), RuntimeWarning, stacklevel=2)
        _synchronize(device)
        seconds = time.perf_counter() - start
    counts = model.inverse_iteration_counts()
    return seconds, (statistics.fmean(counts) if counts else None)


def synthetic_batch(config: Config, input_shape: tuple[int, ...], device: torch.device,
                    generator: torch.Generator | None = None, context: ContextSpec | None = None) -> Batch:
    """A batch of the config's size and data kind with random content (costs do not depend on it),
    with contexts of the kind ``context`` describes (zero labels without one)."""
    n = config.data.batch_size
    if is_toy(config.data):
        x = torch.randn(n, *input_shape, generator=generator)
    else:
        x = torch.randint(0, 2**config.data.n_bits, (n, *input_shape), generator=generator, dtype=torch.uint8)
    y = torch.zeros(n, dtype=torch.long) if context is None else context.example(n)
    return Batch(x.to(device), y.to(device))


def training_step(model: FlowModel, config: Config, batch: Batch, forward=None) -> Callable[[], None]:
    """One training step as the loop does it (loss, backward, Adam step, after-step hooks), with a
    fresh Adam optimizer; ``forward`` may be a compiled wrapper of ``model``."""
    objective = model.make_objective(config.data.n_bits)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)

    def step() -> None:
        loss, _ = objective.loss(model, batch, forward)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.after_optimizer_step()

    return step


def peak_step_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated during one call of ``step``: on CUDA from the allocator's statistics,
    on the CPU by :class:`PeakTensorMemory` (tensors created in the step)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        return int(torch.cuda.max_memory_allocated(device))
    with PeakTensorMemory() as memory:
        step()
    return memory.peak


def peak_training_step_bytes(model: FlowModel, config: Config, device: torch.device) -> int:
    """Peak bytes of one training step at the config's batch size, after a warm-up step so that
    the optimizer state already exists."""
    model.train()
    batch = synthetic_batch(config, model.input_shape, device, derived_generator(config.train.seed, 7),
                            model.context_spec)
    step = training_step(model, config, batch)
    step()
    return peak_step_bytes(step, device)


def final_test_record(run_dir: Path) -> dict[str, Any]:
    """The last held-out evaluation logged in the run's ``metrics.jsonl``."""
    tests = [r for r in read_metrics(RunDir(run_dir).metrics) if r.get("split") == "test"]
    if not tests:
        raise ValueError(f"{run_dir}: metrics.jsonl has no test evaluation")
    return tests[-1]


def training_images_per_s(run_dir: Path) -> float | None:
    """Median of the logged training throughput windows (robust to windows that include an
    evaluation or sample-writing pause); ``None`` when none was logged."""
    rates = [r["images_per_s"] for r in read_metrics(RunDir(run_dir).metrics)
             if r.get("split") == "train" and r.get("images_per_s") is not None]
    return statistics.median(rates) if rates else None


def measure_run(run_dir: Path, metric: str) -> dict[str, Any]:
    """Everything the comparison table needs from one finished run directory, with the provenance
    of its test value and the unreadable checkpoints passed over (``checkpoint_warnings``)."""
    test = final_test_record(run_dir)
    loaded = load_model(run_dir)  # EMA weights, as in evaluation
    model, config = loaded.model, loaded.config
    device = select_device(config.train.device)
    model.to(device)
    sample_s, iterations = time_sampling(model, SAMPLES_TIMED, device, seed=config.train.seed)
    raw = load_model(run_dir, ema=False).model
    peak = peak_training_step_bytes(raw.to(device), config, device)
    warnings = list(loaded.fallbacks)
    if loaded.step != test["step"]:
        warnings.append(f"{run_dir}: the test value is from step {test['step']}, the costs were measured on "
                        f"{loaded.describe()}")
    return {
        "test": test[metric], "test_step": test["step"], "test_stderr": test.get(f"{metric}_stderr"),
        "estimator_stderr": test.get(f"{metric}_estimator_stderr"), "test_count": test.get("count"),
        "params": parameter_count(model), "images_per_s": training_images_per_s(run_dir),
        "sample_64_s": sample_s, "fixed_point_iterations": iterations, "peak_step_bytes": peak,
        "device": str(device), "checkpoint_warnings": warnings,
        "provenance": result_provenance(run_dir, config, test),
    }


def result_provenance(run_dir: Path, config: Config, test: dict[str, Any]) -> dict[str, Any]:
    """Where a run's test value comes from: the EMA weights of its checkpoint at the evaluated
    step (written just before the final evaluation), the data and split, the image count, versions."""
    checkpoint = RunDir(run_dir).checkpoint_at(test["step"])
    return {"checkpoint": str(checkpoint), "step": test["step"], "weights": "EMA",
            **data_provenance(config, "test", config.data.data_dir, test.get("count")), **versions()}
