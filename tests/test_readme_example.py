"""The README's custom-flow example runs as written and learns: after its 150 steps the flow
fits 8gaussians better than the best single Gaussian (maximum-likelihood mean and covariance)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    match = re.search(r"<!-- custom-flow-example -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README lost its custom-flow example"
    return match.group(1)


def test_the_readme_custom_flow_example_runs_and_beats_a_gaussian() -> None:
    names: dict = {}
    exec(compile(readme_example(), "README custom-flow example", "exec"), names)  # noqa: S102
    model, samples, sample_toy2d = names["model"], names["samples"], names["sample_toy2d"]
    assert samples.shape == (1000, 2) and torch.isfinite(samples).all()
    x = sample_toy2d("8gaussians", 20_000, torch.Generator().manual_seed(1)).double()
    mean, cov = x.mean(0), torch.cov(x.T)
    gaussian_nll = float(-torch.distributions.MultivariateNormal(mean, cov).log_prob(x).mean())
    with torch.no_grad():
        flow_nll = float(-model.double().log_prob(x).mean())
    assert math.isfinite(flow_nll) and flow_nll < gaussian_nll - 0.25, (flow_nll, gaussian_nll)
