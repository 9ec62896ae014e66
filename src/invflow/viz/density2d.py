"""2D density plots (data, model density on a grid, model samples) with matplotlib."""
from __future__ import annotations

import io
from collections.abc import Callable

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


def density_2d_png(
    log_prob: Callable[[Tensor], Tensor],
    samples: Tensor | None = None,
    title: str = "",
    bound: float = 4.0,
    resolution: int = 200,
    data: Tensor | None = None,
) -> bytes:
    """The bytes of a PNG with the data's density (a normalised histogram of ``data``, if given),
    the model density on a grid, and a histogram of model samples (if given), side by side, as
    Figure 12 of Chen et al. 2019 shows the data beside the learned densities."""
    xx, yy, density = density_on_grid(log_prob, bound, resolution)
    panels: list[tuple[str, Callable]] = []
    extent = [[-bound, bound], [-bound, bound]]
    if data is not None:
        d = data.detach().cpu().numpy()
        panels.append(("data", lambda ax: ax.hist2d(d[:, 0], d[:, 1], bins=64, range=extent, density=True,
                                                    cmap="inferno")))
    panels.append(("model density", lambda ax: ax.pcolormesh(xx.numpy(), yy.numpy(), density.numpy(),
                                                             cmap="inferno", shading="auto")))
    if samples is not None:
        s = samples.detach().cpu().numpy()
        panels.append(("model samples", lambda ax: ax.hist2d(s[:, 0], s[:, 1], bins=100, range=extent,
                                                             cmap="inferno")))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (name, draw) in zip(axes[0], panels):
        draw(ax)
        ax.set_title(name)
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
