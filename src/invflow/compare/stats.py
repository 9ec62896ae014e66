"""Error-bar arithmetic over seeds: pure functions of lists of floats, no tensors, no I/O.

A comparison trains each preset with ``n`` seeds and evaluates each run once, so two kinds of
spread are reported side by side:

- the seed-to-seed sample standard deviation ``s = sqrt(Σ (v_i − v̄)² / (n − 1))`` and the
  standard error of the mean over seeds ``s / sqrt(n)`` (training randomness + evaluation noise);
- the evaluation's own standard errors ``se_i`` (finite test sample, dequantization noise, or a
  stochastic log-det estimator), combined for the mean of ``n`` independent runs as
  ``sqrt(Σ se_i²) / n``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

NAN = float("nan")


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; NaN for no values."""
    return math.fsum(values) / len(values) if values else NAN


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation with Bessel's correction (divisor ``n − 1``); NaN for ``n < 2``."""
    n = len(values)
    if n < 2:
        return NAN
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1))


def standard_error_of_mean(values: Sequence[float]) -> float:
    """``sample_std / sqrt(n)``: the standard error of the mean over seeds; NaN for ``n < 2``."""
    return sample_std(values) / math.sqrt(len(values)) if len(values) >= 2 else NAN


def combined_standard_error(stderrs: Sequence[float | None]) -> float | None:
    """``sqrt(Σ se_i²) / n``: the standard error of the mean of ``n`` independent estimates with
    standard errors ``se_i``. ``None`` when any is missing (the evaluation did not report one)."""
    if not stderrs or any(se is None for se in stderrs):
        return None
    return math.sqrt(math.fsum(se * se for se in stderrs)) / len(stderrs)


def difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """``mean(a) − mean(b)`` and its standard error ``sqrt(sem_a² + sem_b²)`` (independent seeds).

    The error is NaN when either side has fewer than two seeds, since then its spread is unknown.
    """
    return mean(a) - mean(b), math.hypot(standard_error_of_mean(a), standard_error_of_mean(b))
