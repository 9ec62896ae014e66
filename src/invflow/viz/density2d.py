"""2D density plots (data, model density on a grid, model samples) with matplotlib."""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import Tensor


def density_on_grid(log_prob: Callable[[Tensor], Tensor], bound: float = 4.0, resolution: int = 200,
                    chunk: int = 4096) -> tuple[Tensor, Tensor, Tensor]:
    """Evaluate ``exp(log_prob)`` on a ``resolution²`` grid over ``[-bound, bound]²``."""
    axis = torch.linspace(-bound, bound, resolution)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    values = torch.cat([log_prob(points[i : i + chunk]).detach().cpu() for i in range(0, len(points), chunk)])
    return xx, yy, values.exp().reshape(resolution, resolution)


@dataclass
class DensityRow:
    """One row of a density figure: the model's ``log_prob`` (for one context), its samples and the
    data drawn from the same density (each optional but ``log_prob``), under ``label``."""

    label: str
    log_prob: Callable[[Tensor], Tensor]
    samples: Tensor | None = None
    data: Tensor | None = None


def _panels(row: DensityRow, bound: float, resolution: int) -> list[tuple[str, Callable]]:
    xx, yy, density = density_on_grid(row.log_prob, bound, resolution)
    extent = [[-bound, bound], [-bound, bound]]
    panels: list[tuple[str, Callable]] = []
    if row.data is not None:
        d = row.data.detach().cpu().numpy()
        panels.append(("data", lambda ax: ax.hist2d(d[:, 0], d[:, 1], bins=64, range=extent, density=True,
                                                    cmap="inferno")))
    panels.append(("model density", lambda ax: ax.pcolormesh(xx.numpy(), yy.numpy(), density.numpy(),
                                                             cmap="inferno", shading="auto")))
    if row.samples is not None:
        s = row.samples.detach().cpu().numpy()
        panels.append(("model samples", lambda ax: ax.hist2d(s[:, 0], s[:, 1], bins=100, range=extent,
                                                             cmap="inferno")))
    return panels


def density_rows_png(rows: list[DensityRow], title: str = "", bound: float = 4.0,
                     resolution: int = 200) -> bytes:
    """The bytes of a PNG with one row per ``DensityRow`` (e.g. one per context of a conditional
    model): the data's density (a normalised histogram), the model density on a grid and a
    histogram of model samples, side by side, as Figure 12 of Chen et al. 2019 shows the data
    beside the learned densities."""
    panel_rows = [_panels(row, bound, resolution) for row in rows]
    width = max(len(p) for p in panel_rows)
    fig = Figure(figsize=(4 * width, 4 * len(rows)))
    axes = fig.subplots(len(rows), width, squeeze=False)
    for axes_row, panels, row in zip(axes, panel_rows, rows):
        for ax, (name, draw) in zip(axes_row, panels):
            draw(ax)
            ax.set_title(f"{name} | {row.label}" if row.label else name)
        for ax in axes_row:
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes_row[len(panels):]:
            ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=100 if len(rows) < 4 else 60, format="png")
    return png.getvalue()


def density_2d_png(
    log_prob: Callable[[Tensor], Tensor],
    samples: Tensor | None = None,
    title: str = "",
    bound: float = 4.0,
    resolution: int = 200,
    data: Tensor | None = None,
) -> bytes:
    """One row of :func:`density_rows_png`: the data's density (if ``data`` is given), the model
    density and a histogram of model samples (if given)."""
    return density_rows_png([DensityRow("", log_prob, samples, data)], title, bound, resolution)
