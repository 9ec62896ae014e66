"""Time to sample 64 images per model family; for residual flows, the fixed-point iterations used.

Models are freshly initialised (ActNorm initialised on one batch of random images) unless
``--run`` points at trained run directories; timings of the inverse pass do not depend on the
weights except for residual flows, whose iteration count does (report trained runs for those).

    python benchmarks/sampling.py
    python benchmarks/sampling.py --run runs/resflow-mnist-tiny
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from common import RESULTS, environment, print_environment, write_results

import invflow
from invflow.compare.measure import time_sampling

FAMILIES = {
    "glow (1x1 LU, affine)": "glow-mnist-tiny",
    "woodbury-glow": "woodbury-glow-cifar10-tiny",
    "me-woodbury-glow": "me-woodbury-glow-cifar10-tiny",
    "emerging-glow": "emerging-glow-cifar10-tiny",
    "periodic-glow": "periodic-glow-cifar10-tiny",
    "spline": "spline-cifar10-tiny",
    "macow": "macow-cifar10-tiny",
    "resflow": "resflow-mnist-tiny",
    "resflow (cifar10)": "resflow-cifar10-tiny",
}


def measure(model, n: int, repeats: int) -> dict:
    """Median seconds of ``repeats`` timed ``model.sample(n)`` calls and the fixed-point
    iterations per residual block (``None`` for closed-form inverses)."""
    timed = [time_sampling(model, n, torch.device("cpu"), seed=r) for r in range(repeats)]
    seconds = statistics.median(t for t, _ in timed)
    iterations = timed[-1][1]
    return {"sample_s": seconds, "images_per_s": n / seconds, "fixed_point_iterations_per_block": iterations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", nargs="*", default=[], help="trained run directories to time instead")
    parser.add_argument("--out", type=Path, default=RESULTS / "sampling.json")
    args = parser.parse_args()
    meta = environment("cpu", n=args.n, repeats=args.repeats)
    print_environment(meta)
    rows = []
    print(f"{'model':32s} {'preset / run':34s} {'seconds':>8s} {'images/s':>9s} {'fp iters per block':>19s}")
    targets = [(Path(r).name, r) for r in args.run] or list(FAMILIES.items())
    for name, source in targets:
        torch.manual_seed(0)
        if Path(source).is_dir():
            model, _ = invflow.load_checkpoint(source)
        else:
            model = invflow.build_model(source)
            with torch.no_grad():
                model.log_prob(torch.rand(16, *model.input_shape) * 0.9 + 0.05)  # ActNorm init
        row = {"model": name, "source": source, **measure(model, args.n, args.repeats)}
        rows.append(row)
        iters = (
            ""
            if row["fixed_point_iterations_per_block"] is None
            else f"{row['fixed_point_iterations_per_block']:.1f}"
        )
        print(
            f"{name:32s} {source:34s} {row['sample_s']:8.3f} {row['images_per_s']:9.1f} {iters:>19s}",
            flush=True,
        )
    print(f"wrote {write_results(args.out, meta, rows)}")


if __name__ == "__main__":
    main()
