"""What the product forms of narrow convolutions (``invflow.residual.narrow_conv``) buy.

1. **Operators**: for each convolution shape of the residual nets whose one side has few channels
   (batch 64, 64 hidden channels, channels-last hidden states as ``SpectralNormConv2d`` lays them
   out), the median seconds of oneDNN's kernel (``F.conv2d`` / ``aten.convolution_backward``) and of
   the product form, for the forward, the input gradient and the weight gradient, with both
   outputs checked equal first.
2. **Steps**: the ``vs_reference.py`` residual-flow training step (MNIST, batch 64), eager and with
   ``--compile``, with the product forms on (the module's ``NARROW_*_CHANNELS``) and off (``0``), in one
   process: both settings warmed up (compiled code is cached per setting), then ``--rounds`` rounds
   each timing one step of both, the order alternating; the figure is the median of the per-round
   ratios (seconds off / seconds on: > 1 means the product forms are faster), with their range.

    python benchmarks/narrow_conv.py --threads 1
    python benchmarks/narrow_conv.py --threads 2 --cases eager --rounds 16

Prints tables and writes ``benchmarks/results/narrow_conv_<threads>t.json``. Timings are only
meaningful on a quiet machine; the script records the load average beside them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from common import RESULTS, environment, paired_seconds, print_environment, ratio_summary, write_results
from efficiency import median_seconds
from reference_models import MNIST_SHAPE, RESFLOW_SIZES, invflow_resflow
from vs_reference import data_init, training_step

from invflow.residual import narrow_conv

#: (channels, side) of the narrow convolutions of the MNIST (1 channel, 28 → 14 → 7 after squeezes)
#: and CIFAR-10 (3 channels at 32 x 32) residual nets, and one wide shape for contrast.
OPERATOR_SHAPES = [(1, 28), (3, 32), (4, 14), (16, 7)]
HIDDEN = 64


def _conv_backward(grad, x, weight, mask):
    return torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [1, 1], [1, 1], False,
                                               [0, 0], 1, mask)


def operator_rows(batch: int, steps: int) -> list[dict]:
    """oneDNN against the product forms for the first (C → hidden) and last (hidden → C) 3 x 3
    convolution of each shape, and whether invflow takes the product form for that operator."""
    gen = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    rows = []
    for channels, size in OPERATOR_SHAPES:
        narrow = torch.randn(batch, channels, size, size, generator=gen).contiguous(memory_format=cl)
        wide = torch.randn(batch, HIDDEN, size, size, generator=gen).contiguous(memory_format=cl)
        for name, x, weight, grad in (
            ("first", narrow, torch.randn(HIDDEN, channels, 3, 3, generator=gen), wide),
            ("last", wide, torch.randn(channels, HIDDEN, 3, 3, generator=gen), narrow),
        ):
            weight = weight.contiguous(memory_format=cl)
            adjoint = narrow_conv.transposed_weight(weight)
            forward_taken = narrow_conv._side(x, weight, 1) is not None  # invflow's choice per operator
            takes = {"forward": forward_taken, "weight gradient": forward_taken,
                     "input gradient": narrow_conv._side(grad, adjoint, 1) is not None}
            # the product form of this side whether or not invflow takes it (NARROW_*_CHANNELS decide)
            forward_form, adjoint_form = ((narrow_conv._narrow_in, narrow_conv._narrow_out) if name == "first"
                                          else (narrow_conv._narrow_out, narrow_conv._narrow_in))
            pairs: dict[str, tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]] = {
                "forward": (lambda x=x, w=weight: F.conv2d(x, w, padding=1),
                            lambda x=x, w=weight, f=forward_form: f(x, w, None, True, plain=True)),
                "input gradient": (lambda g=grad, x=x, w=weight:
                                   _conv_backward(g, x, w, [True, False, False])[0],
                                   lambda g=grad, a=adjoint, f=adjoint_form, x=x: f(
                                       g, a, None, narrow_conv.is_channels_last(x), plain=True)),
                "weight gradient": (lambda g=grad, x=x, w=weight:
                                    _conv_backward(g, x, w, [False, True, False])[1],
                                    lambda g=grad, x=x, w=weight, n=name: narrow_conv._weight_product(
                                        "in" if n == "first" else "out", g, x, w.shape, plain=True)),
            }
            for what, (builtin, product) in pairs.items():
                got, want = product(), builtin()
                error = ((got - want).norm() / want.norm()).item()  # float32 sums of up to 10^5 terms
                if not error < 1e-5:
                    raise AssertionError(f"{name} {what}: the product form is off by {error:.1e} (relative)")
                t_builtin, _ = median_seconds(builtin, steps, warmup=2)
                t_product, _ = median_seconds(product, steps, warmup=2)
                rows.append({"conv": f"{name} {channels if name == 'last' else HIDDEN}<-"
                                     f"{channels if name == 'first' else HIDDEN} at {size}x{size}",
                             "invflow_takes_product": takes[what], "op": what, "onednn_ms": 1e3 * t_builtin,
                             "product_ms": 1e3 * t_product, "speedup": t_builtin / t_product})
                r = rows[-1]
                print(f"{r['conv']:24s} {what:16s} {'yes' if takes[what] else 'no':5s} {r['onednn_ms']:8.2f} "
                      f"{r['product_ms']:8.2f} "
                      f"{r['speedup']:6.2f}x")
    return rows


def _set(widths: tuple[int, int]) -> None:
    narrow_conv.NARROW_OUT_CHANNELS, narrow_conv.NARROW_IN_CHANNELS = widths


def _toggled(step: Callable[[], None], widths: tuple[int, int]) -> Callable[[], None]:
    def run() -> None:
        _set(widths)
        step()
    return run


def step_row(case: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    contender = invflow_resflow(RESFLOW_SIZES["small"])
    if case == "compiled":
        contender.model.compile_for_training(contender.model)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(args.batch, *MNIST_SHAPE, generator=gen)
    data_init((contender,), x)
    step = training_step(contender, x)
    default = narrow_conv.NARROW_OUT_CHANNELS, narrow_conv.NARROW_IN_CHANNELS
    try:
        on, off = _toggled(step, default), _toggled(step, (0, 0))
        t_on, t_off = paired_seconds(on, off, args.rounds, args.warmup)
    finally:
        _set(default)
    row = {"case": f"resflow {case}", "batch": args.batch, "narrow_out_in_channels": list(default),
           "on_s": statistics.median(t_on), "off_s": statistics.median(t_off),
           **ratio_summary(t_on, t_off), "rounds": args.rounds, "warmup": args.warmup}
    print(f"resflow {case:9s} on {row['on_s']:.3f} s  off {row['off_s']:.3f} s  "
          f"{row['speedup']:.3f}x [{row['ratio_min']:.3f}, {row['ratio_max']:.3f}]")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=["operators", "eager", "compiled"],
                        default=["operators", "eager", "compiled"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--operator-steps", type=int, default=20)
    parser.add_argument("--out", help="result file (default benchmarks/results/narrow_conv_<threads>t.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = environment("cpu", load_average=os.getloadavg()[0])
    print_environment(meta)
    rows: list[dict] = []
    if "operators" in args.cases:
        print(f"{'convolution':24s} {'operator':16s} {'taken':5s} {'oneDNN ms':>8s} {'product':>8s}")
        rows += operator_rows(args.batch, args.operator_steps)
    rows += [step_row(case, args) for case in ("eager", "compiled") if case in args.cases]
    out = Path(args.out) if args.out else RESULTS / f"narrow_conv_{args.threads}t.json"
    print(f"wrote {write_results(out, meta, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
