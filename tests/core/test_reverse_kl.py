"""Variational inference in the user's own loop: ``rsample_and_log_prob`` gives samples and their
log-density in one differentiable pass, so minimising the reverse KL ``E_q[log q(x) − log p(x)]``
to a 2D banana fits it, with a Glow-style flow and with a residual flow (whose fixed-point inverse
is differentiated implicitly). Measured here (seed 0, 1 thread): KL 0.013 ± 0.002 (Glow) and
0.039 ± 0.003 nats (residual) after 300 steps; the bound is 0.08 nats, from 8192 samples."""
from __future__ import annotations

import math

import pytest
import torch

import invflow

BOUND = 0.08  # nats


def banana_log_prob(x: torch.Tensor) -> torch.Tensor:
    """``x_1 ~ N(0, 1)``, ``x_2 | x_1 ~ N((x_1² − 1)/2, 0.5²)``: normalised, so the KL estimate is
    unbiased."""
    x1, x2 = x[:, 0], x[:, 1]
    normal = -0.5 * math.log(2 * math.pi)
    return (normal - 0.5 * x1**2) + (normal - math.log(0.5) - 0.5 * ((x2 - 0.5 * (x1**2 - 1)) / 0.5) ** 2)


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("glow-toy-rings", {"model__hidden_channels": 32, "model__steps_per_level": 4}),
        ("resflow-toy-8gaussians", {"model__blocks_per_scale": 4, "model__hidden_channels": 32}),
    ],
)
def test_reverse_kl_fit_of_a_banana_converges(preset: str, overrides: dict) -> None:
    torch.manual_seed(0)
    model = invflow.build_model(preset, **overrides)
    with torch.no_grad():
        model.log_prob(torch.randn(512, 2))  # ActNorm's data-dependent init on N(0, I)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        x, log_q = model.rsample_and_log_prob(256)
        loss = (log_q - banana_log_prob(x)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.after_optimizer_step()
    model.eval()
    torch.manual_seed(1)
    x, log_q = model.sample_and_log_prob(8192)
    kl = log_q - banana_log_prob(x)
    assert 0 <= float(kl.mean()) < BOUND, float(kl.mean())
