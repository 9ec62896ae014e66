"""The 2D density plot shows the data's density beside the model's (Chen et al. 2019, Figure 12)."""
from __future__ import annotations

import io

import torch
from PIL import Image

from invflow.data.toy2d import sample_toy2d
from invflow.viz.density2d import density_2d_png


def _gaussian_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * (x**2).sum(dim=1) - torch.log(torch.tensor(2 * torch.pi))


def test_data_panel_is_added_beside_model_density_and_samples() -> None:
    data = sample_toy2d("checkerboard", 2000, torch.Generator().manual_seed(0))
    samples = torch.randn(500, 2)
    with_data = density_2d_png(_gaussian_log_prob, samples, data=data, resolution=20)
    without = density_2d_png(_gaussian_log_prob, samples, resolution=20)
    assert Image.open(io.BytesIO(with_data)).size[0] == 1200  # 3 panels: data, model density, samples
    assert Image.open(io.BytesIO(without)).size[0] == 800
