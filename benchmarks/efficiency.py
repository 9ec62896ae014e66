"""How close a training step runs to this machine's arithmetic limit, and where the rest goes.

For each step (the ``vs_reference.py`` cases: ``glow`` and ``resflow`` at batch 64 on MNIST-shaped
data), in one process:

- **FLOPs** of one training step (forward, backward, optimizer) counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions, the operations
  that dominate, and oneDNN's fused product ``mkldnn._linear_pointwise``, which it does not know:
  registered here as ``2·M·N·K``; elementwise work is not counted, so the fraction below is a
  lower bound on how busy the step keeps the cores);
- **seconds**: the median of ``--steps`` timed steps after ``--warmup``;
- **fraction of the machine's rate**: counted FLOPs / seconds against a float32 matrix product
  measured in the same process at the same thread count (``--matmul-size``³, median of 10);
- **the products alone**: over ``--steps`` more steps, the seconds spent inside the operators
  whose FLOPs are counted (matrix products and convolutions, timed one by one under a
  ``TorchDispatchMode``), their own rate as a fraction of the matrix-multiply rate, and the rest of
  the step (elementwise work, copies, reductions, the optimizer, Python and dispatch): the rate the
  products reach is the ceiling of the whole step's fraction, reached only if the rest took no time;
- **profile**: the top ``--top`` operators by self CPU time over ``--profile-steps`` steps
  (``torch.profiler``), with their calls per step and share of the step.

    python benchmarks/efficiency.py --threads 1
    python benchmarks/efficiency.py --threads 2 --cases glow

The process runs with ``invflow train``'s allocator setting (``train.retain_freed_memory``:
freed blocks kept for the next step) unless ``--no-retain-freed-memory`` is given.

Prints the table and writes ``benchmarks/results/efficiency_<threads>t.json``. Timings are only
meaningful on a quiet machine; the script records the load average beside them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import RESULTS, environment, print_environment, write_results
from reference_models import GLOW_SIZES, MNIST_SHAPE, RESFLOW_SIZES, invflow_glow, invflow_resflow
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula
from vs_reference import data_init, training_step

from invflow.layers.conv_conditioner import _LINEAR_POINTWISE
from invflow.train.heap import retain_freed_memory

CASES = {"glow": lambda: invflow_glow(GLOW_SIZES["small"]),
         "resflow": lambda: invflow_resflow(RESFLOW_SIZES["small"])}


def median_seconds(step: Callable[[], None], steps: int, warmup: int) -> tuple[float, list[float]]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def matmul_rate(size: int, repeats: int = 10) -> float:
    """GFLOP/s of a ``size``³ float32 matrix product (median of ``repeats`` after two warm-ups)."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen) for _ in range(2))
    seconds, _ = median_seconds(lambda: a @ b, repeats, warmup=2)
    return 2 * size**3 / seconds / 1e9


if _LINEAR_POINTWISE is not None:  # oneDNN's product with fused bias + ReLU (Glow's conditioner)
    @register_flop_formula(_LINEAR_POINTWISE)
    def _linear_pointwise_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        rows = 1
        for size in x_shape[:-1]:
            rows *= size
        return 2 * rows * x_shape[-1] * w_shape[0]


def counted_flops(step: Callable[[], None]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


class ProductTimer(TorchDispatchMode):
    """Seconds and calls inside the operators ``FlopCounterMode`` counts (``flop_registry``: matrix
    products, convolutions, and the fused product registered above). The mode is off while an
    operator runs, so an operator's own inner calls are not counted twice."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket not in flop_registry:
            return func(*args, **(kwargs or {}))
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def product_seconds(step: Callable[[], None], steps: int) -> tuple[float, float]:
    """Seconds per step inside the counted products, and their calls per step."""
    timer = ProductTimer()
    with timer:
        for _ in range(steps):
            step()
    return timer.seconds / steps, timer.calls / steps


def top_operators(step: Callable[[], None], steps: int, top: int) -> list[dict]:
    """The ``top`` operators by self CPU time over ``steps`` steps, per step."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
             "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps}
            for e in events[:top]]


def measure(case: str, args: argparse.Namespace, rate: float) -> dict:
    torch.manual_seed(0)
    contender = CASES[case]()
    x = torch.rand(args.batch, *MNIST_SHAPE, generator=torch.Generator().manual_seed(0))
    data_init((contender,), x)
    step = training_step(contender, x)
    flops = counted_flops(step)
    seconds, times = median_seconds(step, args.steps, args.warmup)
    achieved = flops / seconds / 1e9
    products_s, product_calls = product_seconds(step, args.steps)
    products_rate = flops / products_s / 1e9
    row = {"case": case, "batch": args.batch, "gflop": flops / 1e9, "step_s": seconds,
           "step_s_min": min(times), "step_s_max": max(times), "gflop_per_s": achieved,
           "fraction_of_matmul": achieved / rate,
           "products_s": products_s, "product_calls_per_step": product_calls,
           "products_gflop_per_s": products_rate, "products_fraction_of_matmul": products_rate / rate,
           "rest_s": seconds - products_s,
           "profile": top_operators(step, args.profile_steps, args.top)}
    spread = f"[{min(times):.3f}, {max(times):.3f}]"
    print(f"\n{case}: {row['gflop']:.1f} GFLOP/step in {seconds:.3f} s {spread} = "
          f"{achieved:.1f} GFLOP/s, {100 * row['fraction_of_matmul']:.0f}% of the matmul rate")
    print(f"  the products alone: {products_s:.3f} s/step ({product_calls:.0f} calls) = "
          f"{products_rate:.1f} GFLOP/s, {100 * row['products_fraction_of_matmul']:.0f}% of the matmul rate "
          f"(the step's ceiling); the rest {row['rest_s']:.3f} s ({100 * row['rest_s'] / seconds:.0f}%)")
    print(f"  {'operator':44s} {'ms/step':>9s} {'share':>6s} {'calls/step':>10s}")
    for op in row["profile"]:
        print(f"  {op['op'][:44]:44s} {op['self_ms_per_step']:9.1f} {100 * op['share']:5.1f}% "
              f"{op['calls_per_step']:10.0f}")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--matmul-size", type=int, default=1024)
    parser.add_argument("--no-retain-freed-memory", dest="retain", action="store_false",
                        help="leave the allocator as it is (invflow train's train.retain_freed_memory=false)")
    parser.add_argument("--out", help="result file (default benchmarks/results/efficiency_<threads>t.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    retained = args.retain and retain_freed_memory() is not None
    rate = matmul_rate(args.matmul_size)
    meta = environment("cpu", matmul_gflop_per_s=rate, matmul_size=args.matmul_size,
                       load_average=os.getloadavg()[0], retain_freed_memory=retained)
    print_environment(meta)
    rows = [measure(case, args, rate) for case in args.cases]
    out = Path(args.out) if args.out else RESULTS / f"efficiency_{args.threads}t.json"
    print(f"wrote {write_results(out, meta, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
