"""Time and memory of the mixing layers against the complexities of Lu & Huang 2020, Table 1.

For each layer (1x1 LU reference, emerging, periodic, Woodbury, ME-Woodbury), channel count
and image size: median wall time of forward, inverse and forward+backward (no grad for the
first two), and the peak bytes of tensors each pass allocates (tracked with a dispatch mode, in
a separate untimed run; inputs and parameters excluded). A measurement whose first (warm-up) run
exceeds ``--budget`` seconds is recorded as "skipped (over budget)"; larger sizes of the same
layer, channel count and pass are then skipped too.

    python benchmarks/mixing_layers.py               # c = 12, 48; sizes 16, 32, 64, 128
    python benchmarks/mixing_layers.py --quick       # sizes 16, 32; one repeat
    python benchmarks/mixing_layers.py --from-json   # re-print the table, re-draw the PNG
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import RESULTS, PeakTensorMemory, environment, print_environment, write_results

from invflow.core.flow import Flow
from invflow.layers.emerging import EmergingConv
from invflow.layers.invconv import InvConv1x1
from invflow.layers.periodic import PeriodicConv
from invflow.layers.woodbury import MEWoodbury, WoodburyMixing

LATENT_CHANNEL, LATENT_SPATIAL = 8, 16  # fixed d, so Woodbury's growth in c·hw is visible


def layer_factories() -> dict[str, Callable[[int, int], Flow]]:
    """Builders ``(channels, size) -> layer``, the 1x1 LU convolution being the reference."""
    layers: dict[str, Callable[[int, int], Flow]] = {"1x1-lu": lambda c, s: InvConv1x1(c, lu=True)}
    layers["emerging-3x3"] = lambda c, s: EmergingConv(c, 3)
    layers["periodic-3x3"] = lambda c, s: PeriodicConv(c, s, s, 3)
    layers["woodbury"] = lambda c, s: WoodburyMixing(c, s, s, LATENT_CHANNEL, LATENT_SPATIAL)
    layers["me-woodbury"] = lambda c, s: MEWoodbury(c, s, s, LATENT_CHANNEL, LATENT_SPATIAL, LATENT_SPATIAL)
    return layers


# Lu & Huang 2020, Table 1, as functions of (c, n = hw, d, k); only the growth in n is compared.
COMPLEXITY: dict[str, tuple[str, Callable[[int, int], float]]] = {
    "1x1-lu": ("O(c²n)", lambda c, n: c * c * n),
    "emerging-3x3": ("O(c²k²n)", lambda c, n: c * c * 9 * n),
    "periodic-3x3": ("O(c²n log n + c³n)", lambda c, n: c * c * n * math.log2(n) + c**3 * n),
    "woodbury": ("O(dcn)", lambda c, n: LATENT_SPATIAL * c * n),
    "me-woodbury": ("O(dcn)", lambda c, n: LATENT_SPATIAL * c * n),
}


def make_pass(layer: Flow, x: torch.Tensor, name: str) -> Callable[[], None]:
    """One forward, inverse or forward+backward pass on a fixed input."""
    if name == "forward":
        return lambda: torch.no_grad()(layer)(x)
    if name == "inverse":
        z = torch.no_grad()(layer)(x)[0]
        return lambda: torch.no_grad()(layer.inverse)(z)

    def forward_backward() -> None:
        z, logdet = layer(x)
        (0.5 * z.square().sum() - logdet.sum()).backward()

    return forward_backward


def measure(fn: Callable[[], None], repeats: int, budget: float) -> dict:
    start = time.perf_counter()
    fn()  # warm-up
    first = time.perf_counter() - start
    if first > budget:
        return {"status": f"skipped (over budget: warm-up {first:.1f} s > {budget:g} s)", "time_s": None}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    with PeakTensorMemory() as mem:
        fn()
    return {"status": "ok", "time_s": statistics.median(times), "peak_mb": mem.peak / 2**20}


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name, make in layer_factories().items():
        for c in args.channels:
            over_budget: set[str] = set()
            for size in args.sizes:
                torch.manual_seed(0)
                layer = make(c, size)
                x = torch.randn(args.batch, c, size, size)
                for pass_name in ("forward", "inverse", "forward+backward"):
                    row = {"layer": name, "channels": c, "size": size, "hw": size * size, "pass": pass_name}
                    if pass_name in over_budget:
                        row.update(status="skipped (over budget at a smaller size)", time_s=None)
                    else:
                        row.update(measure(make_pass(layer, x, pass_name), args.repeats, args.budget))
                        if row["status"] != "ok":
                            over_budget.add(pass_name)
                    layer.zero_grad(set_to_none=True)
                    rows.append(row)
                    shown = (
                        f"{row['time_s'] * 1e3:10.2f} ms {row['peak_mb']:9.1f} MB"
                        if row["time_s"]
                        else row["status"]
                    )
                    print(f"{name:13s} c={c:<3d} {size:4d}² {pass_name:17s} {shown}", flush=True)
    return rows


def growth_exponents(rows: list[dict]) -> dict[str, float]:
    """Least-squares slope of log(time) vs log(hw) per (layer, c, pass), over the measured sizes."""
    slopes = {}
    keys = {(r["layer"], r["channels"], r["pass"]) for r in rows}
    for key in sorted(keys):
        pts = [(math.log(r["hw"]), math.log(r["time_s"])) for r in rows
               if (r["layer"], r["channels"], r["pass"]) == key and r["time_s"]]
        if len(pts) >= 2:
            mx = statistics.fmean(p[0] for p in pts)
            my = statistics.fmean(p[1] for p in pts)
            slope = sum((px - mx) * (py - my) for px, py in pts) / sum((px - mx) ** 2 for px, _ in pts)
            slopes["/".join(map(str, key))] = round(slope, 2)
    return slopes


def print_table(rows: list[dict]) -> None:
    """Time in ms per size (peak MB of the largest measured size last), one line per layer, c, pass."""
    sizes = sorted({r["size"] for r in rows})
    print(
        f"{'layer':13s} {'c':>3s} {'pass':17s}" + "".join(f"{f'{s}² ms':>11s}" for s in sizes) + "   peak MB"
    )
    for key in dict.fromkeys((r["layer"], r["channels"], r["pass"]) for r in rows):
        cells = {r["size"]: r for r in rows if (r["layer"], r["channels"], r["pass"]) == key}
        times = "".join(
            f"{cells[s]['time_s'] * 1e3:11.2f}" if cells.get(s, {}).get("time_s") else f"{'skipped':>11s}"
            for s in sizes
        )
        peak = [cells[s]["peak_mb"] for s in sizes if cells.get(s, {}).get("time_s")]
        print(f"{key[0]:13s} {key[1]:3d} {key[2]:17s}{times}  {peak[-1] if peak else float('nan'):8.1f}")


def plot(rows: list[dict], channels: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    passes = ("forward", "inverse", "forward+backward")
    fig, axes = plt.subplots(len(channels), 3, figsize=(15, 4.5 * len(channels)), squeeze=False)
    for i, c in enumerate(channels):
        for j, pass_name in enumerate(passes):
            ax = axes[i][j]
            for k, layer in enumerate(dict.fromkeys(r["layer"] for r in rows)):
                pts = [
                    (r["hw"], r["time_s"])
                    for r in rows
                    if r["layer"] == layer and r["channels"] == c and r["pass"] == pass_name and r["time_s"]
                ]
                if not pts:
                    continue
                colour = f"C{k}"
                ax.loglog(*zip(*pts), "o-", color=colour, label=layer)
                label, cost = COMPLEXITY[layer]
                n0, t0 = pts[0]
                ns = [p[0] for p in pts]
                ax.loglog(ns, [t0 * cost(c, n) / cost(c, n0) for n in ns], "--", color=colour, alpha=0.5,
                          label=f"  Table 1: {label}")
            ax.set_title(f"{pass_name}, c = {c}")
            ax.set_xlabel("h·w")
            ax.set_ylabel("time (s)")
            ax.grid(True, which="both", alpha=0.3)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(
        "Mixing layers: measured time (solid) vs Table 1 growth anchored at the smallest size (dashed)"
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 16, 32 and one repeat")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--channels", type=int, nargs="+", default=[12, 48])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds allowed for one warm-up pass")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "mixing_layers.json")
    parser.add_argument(
        "--from-json", action="store_true", help="re-print the table and re-draw the plot of --out"
    )
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.out.read_text())
        print(" | ".join(f"{k}: {v}" for k, v in saved["meta"].items() if k != "growth_exponent_time_vs_hw"))
        print_table(saved["results"])
        plot(
            saved["results"],
            list(dict.fromkeys(r["channels"] for r in saved["results"])),
            args.out.with_suffix(".png"),
        )
        return
    if args.quick:
        args.sizes, args.repeats = [s for s in args.sizes if s <= 32], 1
    torch.set_num_threads(args.threads)
    meta = environment("cpu", batch=args.batch, repeats=args.repeats,
                       latent={"channel": LATENT_CHANNEL, "spatial/height/width": LATENT_SPATIAL})
    print_environment(meta)
    rows = run(args)
    meta["growth_exponent_time_vs_hw"] = growth_exponents(rows)
    write_results(args.out, meta, rows)
    plot(rows, args.channels, args.out.with_suffix(".png"))
    print_table(rows)
    print("growth exponents (slope of log time vs log hw):")
    for key, slope in meta["growth_exponent_time_vs_hw"].items():
        print(f"  {key:40s} {slope:5.2f}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
