"""Linear interpolation in latent space between pairs of held-out examples (Kingma & Dhariwal
2018, Glow, figure 5): ``x(t) = f^{-1}((1 - t) f(a) + t f(b))`` for ``t`` from 0 to 1."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from invflow.core.model import FlowModel
from invflow.latent.codec import decode, encode, features
from invflow.storage import write_atomic
from invflow.viz.grids import image_grid_png


@dataclass
class Interpolation:
    """``paths[i, j]`` is the decoded point at ``t = j / (steps - 1)`` between ``starts[i]`` and
    ``ends[i]``; ``iterations`` are the inverse's fixed-point iterations (residual flows)."""

    starts: Tensor
    ends: Tensor
    paths: Tensor
    iterations: int | None


@torch.no_grad()
def interpolate(model: FlowModel, starts: Tensor, ends: Tensor, steps: int,
                start_context: Tensor | None = None, end_context: Tensor | None = None,
                decode_contexts: tuple[Tensor, Tensor] | None = None) -> Interpolation:
    """Decode ``steps`` evenly spaced points on the segment between the latents of each pair.

    A conditional model encodes each end under its own context (labels or vectors) and decodes
    point ``t`` under ``(1 − t)·c_a + t·c_b`` of what the layers read (one-hot rows for labels), so
    both ends decode to themselves; ``decode_contexts = (c_a, c_b)`` decodes under other contexts
    instead, e.g. one image (``starts = ends``) under a label turning from one class into another.
    """
    if steps < 2:
        raise ValueError(f"interpolation needs at least 2 steps (both ends), got {steps}")
    pairs = starts.shape[0]
    c_a, c_b = features(model, start_context, pairs), features(model, end_context, pairs)
    z_a, z_b = encode(model, starts, c_a), encode(model, ends, c_b)
    t = torch.linspace(0, 1, steps, dtype=z_a.dtype, device=z_a.device).view(1, steps, 1)
    z = ((1 - t) * z_a.unsqueeze(1) + t * z_b.unsqueeze(1)).reshape(-1, z_a.shape[1])
    context = None
    if c_a is not None:
        if decode_contexts is not None:
            c_a, c_b = (features(model, c, pairs) for c in decode_contexts)
        context = ((1 - t) * c_a.unsqueeze(1) + t * c_b.unsqueeze(1)).reshape(-1, c_a.shape[1])
    x, iterations = decode(model, z, context)
    paths = x.reshape(starts.shape[0], steps, *starts.shape[1:])
    return Interpolation(starts.cpu(), ends.cpu(), paths.cpu(), iterations)


def write_interpolation(result: Interpolation, path: Path, title: str = "") -> Path:
    """PNG with one row per pair (images, clamped to [0, 1]) or one path per pair (2D points)."""
    pairs, steps = result.paths.shape[:2]
    if result.paths.dim() == 3:
        return _plot_paths(result, path, title)
    return write_atomic(
        path, image_grid_png(result.paths.reshape(pairs * steps, *result.paths.shape[2:]), nrow=steps)
    )


def _plot_paths(result: Interpolation, path: Path, title: str) -> Path:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for i, line in enumerate(result.paths.numpy()):
        ax.plot(line[:, 0], line[:, 1], "-o", markersize=3, color=f"C{i % 10}")
        ax.scatter(*result.starts[i].numpy(), s=60, marker="s", facecolors="none", edgecolors=f"C{i % 10}")
        ax.scatter(*result.ends[i].numpy(), s=60, marker="^", facecolors="none", edgecolors=f"C{i % 10}")
    ax.set_aspect("equal")
    ax.set_title(f"{title}  (square: start, triangle: end)".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
