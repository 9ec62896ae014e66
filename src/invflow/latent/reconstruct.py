"""Reconstructions ``f^{-1}(f(x))`` of held-out data: the invertibility a user can see."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from invflow.core.model import FlowModel
from invflow.latent.codec import decode, encode, features
from invflow.viz.grids import image_grid


@dataclass
class Reconstruction:
    """Originals, their reconstructions, the largest absolute difference of any pixel (on the
    [0, 1] image scale; in data units for 2D points) and the inverse's fixed-point iterations."""

    originals: Tensor
    reconstructions: Tensor
    max_error: float
    iterations: int | None


@torch.no_grad()
def reconstruct(model: FlowModel, x: Tensor, context: Tensor | None = None) -> Reconstruction:
    """Encode ``x`` and decode its latents; a conditional model both ways under each example's own
    ``context`` (labels or vectors; ignored by an unconditional model)."""
    c = features(model, context, x.shape[0])
    x_hat, iterations = decode(model, encode(model, x, c), c)
    error = (x_hat - x).abs().max().item()
    return Reconstruction(x.cpu(), x_hat.cpu(), error, iterations)


def write_reconstruction(result: Reconstruction, path: Path, title: str = "") -> Path:
    """PNG of the originals (left) beside their reconstructions (right); 2D points are drawn as
    dots (originals) and crosses (reconstructions)."""
    if result.originals.dim() == 2:
        return _plot_points(result, path, title)
    left, right = image_grid(result.originals), image_grid(result.reconstructions)
    gap = np.full((left.shape[0], 8, *left.shape[2:]), 255, dtype=np.uint8)
    Image.fromarray(np.concatenate([left, gap, right], axis=1)).save(path)
    return path


def _plot_points(result: Reconstruction, path: Path, title: str) -> Path:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    x, x_hat = result.originals.numpy(), result.reconstructions.numpy()
    ax.scatter(x[:, 0], x[:, 1], s=30, facecolors="none", edgecolors="C0", label="original")
    ax.scatter(x_hat[:, 0], x_hat[:, 1], s=12, marker="x", color="C3", label="reconstruction")
    ax.set_aspect("equal")
    ax.legend(fontsize=8)
    ax.set_title(f"{title}  max error {result.max_error:.1e}".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
