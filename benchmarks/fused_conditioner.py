"""What Glow's fused conditioner Function (``invflow.layers.conv_conditioner._GemmConditioner``) and its
native CPU kernels (``conv_conditioner_kernels``) buy.

The ``vs_reference.py`` Glow training step (``--size small``: 2 levels × 8 steps, 128 hidden channels,
MNIST, batch 64; ``full``: glow-mnist's 2 × 32 steps, 512 channels) in one process, two comparisons:

- ``native``: the Function with its native kernels against the Function in Python
  (``conv_conditioner.native_kernels`` switched off);
- ``fused``: the Function (native kernels where built) against the differentiable GEMM form
  (``fused_linear_relu_available`` switched off).

Each takes ``--rounds`` rounds timing one step of both, the order alternating; the figure is the
median of the per-round ratios (seconds without / with: > 1 means the faster path is faster), with
their range.

    python benchmarks/fused_conditioner.py --threads 1
    python benchmarks/fused_conditioner.py --threads 2 --rounds 16
    python benchmarks/fused_conditioner.py --size full --batch 16 --rounds 8 --threads 2

Prints the figures and writes ``benchmarks/results/fused_conditioner_[full_]<threads>t.json``. Timings are
only meaningful on a quiet machine; the script records the load average beside them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch
from common import RESULTS, environment, paired_seconds, print_environment, ratio_summary, write_results
from reference_models import GLOW_SIZES, MNIST_SHAPE, invflow_glow
from vs_reference import data_init, training_step

import invflow.layers.conv_conditioner as conv_conditioner
from invflow.layers import conv_conditioner_kernels


def compare(name: str, step, switch: tuple, args: argparse.Namespace) -> dict:
    """The step with ``switch = (module, attribute, on, off)`` on against off, paired."""
    module, attribute, on, off = switch

    def with_it() -> None:
        setattr(module, attribute, on)
        step()

    def without() -> None:
        setattr(module, attribute, off)
        step()

    try:
        t_with, t_without = paired_seconds(with_it, without, args.rounds, args.warmup)
    finally:
        setattr(module, attribute, on)
    row = {"case": f"glow-{args.size}", "comparison": name, "batch": args.batch,
           "with_s": statistics.median(t_with), "without_s": statistics.median(t_without),
           **ratio_summary(t_with, t_without), "rounds": args.rounds, "warmup": args.warmup}
    print(f"glow-{args.size} step, {name}: with {row['with_s']:.4f} s, without {row['without_s']:.4f} s, "
          f"{row['speedup']:.3f}x [{row['ratio_min']:.3f}, {row['ratio_max']:.3f}]")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", choices=sorted(GLOW_SIZES), default="small")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", help="result file (default: benchmarks/results/"
                                      "fused_conditioner_[full_]<threads>t.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = environment("cpu", load_average=os.getloadavg()[0])
    print_environment(meta)
    available = conv_conditioner.fused_linear_relu_available
    if not available():
        print("this torch has no oneDNN fused product: nothing to compare")
        return 1
    torch.manual_seed(0)
    contender = invflow_glow(GLOW_SIZES[args.size])
    gen = torch.Generator().manual_seed(1)
    x = (torch.randint(0, 256, (args.batch, *MNIST_SHAPE), generator=gen).float()
         + torch.rand(args.batch, *MNIST_SHAPE, generator=gen)) / 256
    data_init((contender,), x)
    step = training_step(contender, x)
    native = conv_conditioner.native_kernels
    rows = []
    if native() is None:
        why = conv_conditioner_kernels.failure() or "switched off"
        print(f"the native kernels are unavailable here ({why}): only the fused comparison runs")
    else:
        rows.append(compare("native", step, (conv_conditioner, "native_kernels", native, lambda: None), args))
    rows.append(compare("fused", step, (conv_conditioner, "fused_linear_relu_available", available,
                                        lambda: False), args))
    size = "" if args.size == "small" else f"{args.size}_"
    out = Path(args.out) if args.out else RESULTS / f"fused_conditioner_{size}{args.threads}t.json"
    print(f"wrote {write_results(out, meta, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
