"""Evaluation: the objective's per-sample value over a held-out split, mean ± standard error."""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.core.objectives import Objective
from invflow.train.batches import Batch, derived_generator
from invflow.train.distributed import DistContext, all_reduce_sum


def held_out_batches(config: Config, images=None, limit: int | None = None,
                     world: DistContext = DistContext()) -> Iterator[Batch]:
    """Fixed evaluation batches: the test images in order, or a fixed sample of a toy density.
    Under DDP process ``r`` takes batches ``r, r + world_size, …`` of the first ``limit``."""
    batch_size = config.data.batch_size
    if images is None:
        from invflow.data.toy2d import sample_toy2d_with_context

        source = sample_toy2d_with_context(
            config.data.dataset, config.data.toy_samples, derived_generator(config.train.seed, 4)
        )
    else:
        source = (images.images, images.labels)
    n_batches = math.ceil(source[0].shape[0] / batch_size)
    for i in range(world.rank, n_batches if limit is None else min(limit, n_batches), world.world_size):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        yield Batch(source[0][sl], source[1][sl])


def format_estimate(mean: float, stderr: float) -> str:
    """``mean ± stderr``, or the mean alone saying why when the standard error is undefined (one sample)."""
    if math.isnan(stderr):
        return f"{mean:.4f} (standard error undefined)"
    return f"{mean:.4f} ± {stderr:.4f}"


@dataclass
class EvalResult:
    """The metric's mean over samples with its standard error over samples, the standard error
    due to the log-det estimator alone (``draws`` > 1), and averaged extras (accuracy)."""

    metric: str
    mean: float
    stderr: float
    count: int
    draws: int = 1
    estimator_stderr: float | None = None
    estimator: str = "exact log-det"
    extras: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        out = {
            self.metric: self.mean,
            f"{self.metric}_stderr": self.stderr,
            "count": self.count,
            **self.extras,
        }
        if self.estimator_stderr is not None:
            out[f"{self.metric}_estimator_stderr"] = self.estimator_stderr
        return out

    def __str__(self) -> str:
        text = (
            f"{self.metric} {format_estimate(self.mean, self.stderr)} "
            f"(standard error over {self.count} samples)"
            if self.count > 1
            else f"{self.metric} {self.mean:.4f} (standard error undefined: only {self.count} sample)"
        )
        if self.estimator_stderr is not None:
            text += f", estimator standard error {self.estimator_stderr:.4f} ({self.draws} draws per sample)"
        extras = "".join(f", {k} {v:.4f}" for k, v in self.extras.items())
        return f"{text}{extras}; {self.estimator}"


@torch.no_grad()
def evaluate(model: FlowModel, objective: Objective, batches: Iterator[Batch], device: torch.device,
             seed: int = 0, draws: int | None = None, world: DistContext = DistContext()) -> EvalResult:
    """Average the objective's metric in eval mode (over all processes' shards under DDP).

    The dequantization noise and the log-det estimator's randomness are drawn from ``seed`` in
    a forked RNG, so evaluation is reproducible and leaves training's RNG alone. Stochastic
    (residual) models are evaluated ``draws`` times per sample (default ``model.eval_draws``):
    the per-sample mean is reported, and the estimator's standard error is
    ``sqrt(Σ_i s_i² / draws) / N`` with ``s_i²`` the variance of sample i's draws.
    """
    draws = draws or model.eval_draws
    was_training = model.training
    model.eval()
    # Sufficient statistics: count, Σ m_i, Σ m_i², Σ s_i², then Σ of each extra.
    totals = torch.zeros(4, dtype=torch.float64)
    extra_sums: dict[str, float] = {}
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + world.rank)
            for batch in batches:
                drawn, batch_extras = objective.eval_batch(model, batch.to(device), draws)
                drawn = drawn.double().cpu()
                means = drawn.mean(dim=0)
                spread = drawn.var(dim=0).sum() if draws > 1 else 0.0
                totals += torch.stack([torch.tensor(float(means.numel())), means.sum(), (means**2).sum(),
                                       torch.as_tensor(spread, dtype=torch.float64)])
                for key, value in batch_extras.items():
                    extra_sums[key] = extra_sums.get(key, 0.0) + float(value.double().sum())
    finally:
        model.train(was_training)
    keys = list(objective.extras)
    totals = all_reduce_sum(
        torch.cat([totals, torch.tensor([extra_sums.get(k, 0.0) for k in keys], dtype=torch.float64)]), world
    )
    n, total, total_sq, spread = (float(v) for v in totals[:4])
    if n == 0:
        raise ValueError("evaluation got no data")
    mean = total / n
    if n < 2:
        warnings.warn(
            f"evaluated on only {int(n)} sample: the split is too small for a standard error, and one "
            "sample says little about the model; evaluate on a larger split",
            RuntimeWarning,
            stacklevel=2,
        )
    variance = (total_sq - n * mean**2) / (n - 1) if n > 1 else float("nan")
    stderr = math.sqrt(max(variance, 0.0) / n) if n > 1 else float("nan")
    estimator_stderr = math.sqrt(spread / draws) / n if draws > 1 else None
    return EvalResult(objective.metric, mean, stderr, int(n), draws, estimator_stderr,
                      model.estimator,
                      {k: float(v) / n for k, v in zip(keys, totals[4:])})


@torch.no_grad()
def generative_classifier_accuracy(model: FlowModel, objective: Objective, batches: Iterator[Batch],
                                   device: torch.device, seed: int = 0) -> tuple[float, int]:
    """``(accuracy, count)`` of the generative classifier ``argmax_y log p(x | y) + log p(y)`` of a
    class-conditional model on labelled batches, with ``p(y)`` uniform over the classes (so the
    rule is ``argmax_y log p(x | y)``). Every class is scored on the same dequantized ``x`` and, for
    a stochastic log-det estimate (residual flows), with the same random numbers (probe vectors and
    series length), so the classes' scores differ by the model, not by estimator noise. Costs one
    ``log_prob`` pass per class."""
    spec = model.context_spec
    if spec is None or not spec.is_class:
        raise ValueError("the generative classifier needs a class-conditional model")
    was_training = model.training
    model.eval()
    correct = count = 0
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for batch in batches:
                batch = batch.to(device)
                x = objective.model_input(model, batch)
                draw = int(torch.randint(2**62, ()))
                scores = torch.stack([_log_prob_with_seed(model, x, torch.full_like(batch.y, c), draw)
                                      for c in range(spec.num_classes)], dim=1)
                correct += int((scores.argmax(dim=1) == batch.y).sum())
                count += int(batch.y.shape[0])
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluation got no data")
    return correct / count, count


def _log_prob_with_seed(model: FlowModel, x: torch.Tensor, context: torch.Tensor, seed: int) -> torch.Tensor:
    """``log p(x | context)`` with the global RNG reset to ``seed`` first: common random numbers."""
    torch.manual_seed(seed)
    return model.log_prob(x, context)
