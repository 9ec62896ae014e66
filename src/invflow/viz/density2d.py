"""2D density plots (model density on a grid, beside samples) with matplotlib."""
from __future__ import annotations

import io
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402


def density_on_grid(log_prob: Callable[[Tensor], Tensor], bound: float = 4.0, resolution: int = 200,
                    chunk: int = 4096) -> tuple[Tensor, Tensor, Tensor]:
    """Evaluate ``exp(log_prob)`` on a ``resolution²`` grid over ``[-bound, bound]²``."""
    axis = torch.linspace(-bound, bound, resolution)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    values = torch.cat([log_prob(points[i : i + chunk]).detach().cpu() for i in range(0, len(points), chunk)])
    return xx, yy, values.exp().reshape(resolution, resolution)


def density_2d_png(log_prob: Callable[[Tensor], Tensor], samples: Tensor | None = None,
                   title: str = "", bound: float = 4.0, resolution: int = 200) -> bytes:
    """The bytes of a PNG with the model density (left) and model samples (right)."""
    xx, yy, density = density_on_grid(log_prob, bound, resolution)
    panels = 2 if samples is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4), squeeze=False)
    axes[0, 0].pcolormesh(xx.numpy(), yy.numpy(), density.numpy(), cmap="inferno", shading="auto")
    axes[0, 0].set_title("density")
    if samples is not None:
        s = samples.detach().cpu().numpy()
        axes[0, 1].hist2d(s[:, 0], s[:, 1], bins=100, range=[[-bound, bound], [-bound, bound]], cmap="inferno")
        axes[0, 1].set_title("samples")
    for ax in axes[0]:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=100, format="png")
    plt.close(fig)
    return png.getvalue()
