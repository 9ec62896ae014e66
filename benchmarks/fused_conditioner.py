"""What Glow's fused conditioner Function (``invflow.layers.conv_conditioner._GemmConditioner``) buys.

The ``vs_reference.py`` Glow training step (2 levels × 8 steps, 128 hidden channels, MNIST, batch
64) in one process, with the Function (float32 training on the CPU: fused bias + ReLU products,
in-place ReLU gradients, shifted-copy im2col/col2im) and without it (the differentiable GEMM form,
``fused_linear_relu_available`` switched off): ``--rounds`` rounds each timing one step of both,
the order alternating; the figure is the median of the per-round ratios (seconds without / with:
> 1 means the Function is faster), with their range.

    python benchmarks/fused_conditioner.py --threads 1
    python benchmarks/fused_conditioner.py --threads 2 --rounds 16

Prints the figure and writes ``benchmarks/results/fused_conditioner_<threads>t.json``. Timings are
only meaningful on a quiet machine; the script records the load average beside them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch
from common import RESULTS, environment, paired_seconds, print_environment, write_results
from reference_models import GLOW_SIZES, MNIST_SHAPE, invflow_glow
from vs_reference import data_init, training_step

import invflow.layers.conv_conditioner as conv_conditioner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", help="result file (default: benchmarks/results/"
                                      "fused_conditioner_<threads>t.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = environment("cpu", load_average=os.getloadavg()[0])
    print_environment(meta)
    available = conv_conditioner.fused_linear_relu_available
    if not available():
        print("this torch has no oneDNN fused product: nothing to compare")
        return 1
    torch.manual_seed(0)
    contender = invflow_glow(GLOW_SIZES["small"])
    gen = torch.Generator().manual_seed(1)
    x = (torch.randint(0, 256, (args.batch, *MNIST_SHAPE), generator=gen).float()
         + torch.rand(args.batch, *MNIST_SHAPE, generator=gen)) / 256
    data_init((contender,), x)
    step = training_step(contender, x)

    def fused() -> None:
        conv_conditioner.fused_linear_relu_available = available
        step()

    def plain() -> None:
        conv_conditioner.fused_linear_relu_available = lambda: False
        step()

    try:
        t_fused, t_plain = paired_seconds(fused, plain, args.rounds, args.warmup)
    finally:
        conv_conditioner.fused_linear_relu_available = available
    ratios = [b / a for a, b in zip(t_fused, t_plain)]
    row = {"case": "glow", "batch": args.batch, "fused_s": statistics.median(t_fused),
           "plain_s": statistics.median(t_plain), "speedup": statistics.median(ratios),
           "ratio_min": min(ratios), "ratio_max": max(ratios), "rounds": args.rounds, "warmup": args.warmup}
    print(f"glow step: fused {row['fused_s']:.4f} s, plain {row['plain_s']:.4f} s, {row['speedup']:.3f}x "
          f"[{row['ratio_min']:.3f}, {row['ratio_max']:.3f}]")
    out = Path(args.out) if args.out else RESULTS / f"fused_conditioner_{args.threads}t.json"
    print(f"wrote {write_results(out, meta, [row])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
