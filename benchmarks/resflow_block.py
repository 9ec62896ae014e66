"""What each residual-flow speed-up buys: one residual block's training step with everything on,
against the same step with one piece switched back, paired and interleaved in one process.

The block is the MNIST scale-1 block of issue 16 (1 channel, 28x28, 64 hidden, batch 64, ActNorm
before it, Neumann gradient with backward-in-forward) with the series length fixed at 2 + 2
terms so that both sides do the same work. Variants:

- ``nchw``: ``SpectralNormConv2d.channels_last = False`` (convolutions in the NCHW layout);
- ``builtin-conv``: ``torch.nn.functional.conv2d`` and PyTorch's own double backward instead of
  ``invflow.residual.conv``;
- ``unfused-lipswish``: ``x·σ(βx)/1.1`` differentiated by autograd instead of the fused function.

Per round both steps run, alternating which goes first; the figure is the median over rounds of
(variant seconds / all-on seconds), in process CPU time (less sensitive to other processes
than wall time on a shared machine).

    python benchmarks/resflow_block.py --rounds 8 --channels 1 16
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from common import RESULTS, environment, print_environment, ratio_summary, write_results

import invflow.residual.iresblock as iresblock
import invflow.residual.lipschitz as lipschitz
from invflow.layers.actnorm import ActNorm
from invflow.residual import InvertibleResidualBlock, LipSwish, conv_residual_net
from invflow.residual.activations import lipswish_reference

SIZES = {1: 28, 4: 14, 16: 7}  # channels -> image size at the three MNIST scales


@contextmanager
def variant(name: str) -> Iterator[None]:
    """Switch one speed-up off for the duration."""
    saved = (lipschitz.SpectralNormConv2d.channels_last, lipschitz.conv2d, LipSwish.forward)
    if name == "nchw":
        lipschitz.SpectralNormConv2d.channels_last = False
    elif name == "builtin-conv":
        lipschitz.conv2d = lambda x, w, b, padding: F.conv2d(x, w, b, padding=padding)
    elif name == "unfused-lipswish":
        LipSwish.forward = lambda self, x: lipswish_reference(x, self.beta)
    try:
        yield
    finally:
        lipschitz.SpectralNormConv2d.channels_last, lipschitz.conv2d, LipSwish.forward = saved


def block_step(channels: int, hidden: int, batch: int) -> Callable[[], None]:
    size = SIZES[channels]
    torch.manual_seed(0)
    actnorm = ActNorm(channels)
    block = InvertibleResidualBlock(conv_residual_net(channels, hidden), (channels, size, size),
                                    gradient="neumann", n_dist="poisson")
    x = torch.randn(batch, channels, size, size)

    def step() -> None:
        y, logdet = block(actnorm(x)[0])
        (0.5 * y.pow(2).flatten(1).sum(1) - logdet).mean().backward()
        block.zero_grad(set_to_none=True)
        actnorm.zero_grad(set_to_none=True)

    return step


def timed(step: Callable[[], None], name: str) -> float:
    with variant(name):
        start = time.process_time()
        step()
        return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", choices=sorted(SIZES), default=[1])
    parser.add_argument("--variants", nargs="+", choices=("nchw", "builtin-conv", "unfused-lipswish"),
                        default=["nchw", "builtin-conv", "unfused-lipswish"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    iresblock.sample_roulette_length = lambda *_: 2  # the same work on both sides
    meta = environment("cpu", rounds=args.rounds, clock="process CPU time", series_terms=4)
    print_environment(meta)
    rows = []
    for channels in args.channels:
        step = block_step(channels, args.hidden, args.batch)
        for name in args.variants:
            timed(step, "all-on")
            timed(step, name)
            ours, other = [], []
            for r in range(args.rounds):
                order = [("all-on", ours), (name, other)]
                for which, out in (order if r % 2 == 0 else order[::-1]):
                    out.append(timed(step, which))
            row = {"channels": channels, "variant": name, "all_on_s": statistics.median(ours),
                   "variant_s": statistics.median(other), **ratio_summary(ours, other)}
            rows.append(row)
            print(f"channels {channels:2d}  {name:17s} all-on {row['all_on_s']:.3f}s  "
                  f"variant {row['variant_s']:.3f}s  "
                  f"bought {row['speedup']:.2f}x [{row['ratio_min']:.2f}, {row['ratio_max']:.2f}]")
    path = write_results(RESULTS / "resflow_block.json", meta, rows)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
