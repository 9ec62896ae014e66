"""Peak memory and time of one training step (forward + backward) of a stack of residual
blocks, plain backprop through the log-det power series vs the Neumann gradient
(Chen et al. 2019, appendix C and Figure 3), for truncations n = 2, 5, 10, 20.

The series is truncated at exactly n terms (``n_dist="fixed"``) so that n is the variable.
Memory is the peak of tensor memory allocated *during* the step above what was live before it:
on CUDA ``torch.cuda.max_memory_allocated``; on CPU the allocation/free events of the PyTorch
CPU allocator recorded by ``torch.profiler`` (``profile_memory=True``), summed in time order —
this counts every tensor (activations, autograd buffers, gradients), not process RSS. Time is
the median over ``--repeats`` unprofiled steps.

    python benchmarks/logdet_memory.py [--device cpu|cuda] [--batch 8] [--hidden 32] [--blocks 4]
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from invflow.core.flow import SequentialFlow
from invflow.core.hooks import refresh_weight_derived_state
from invflow.residual import InvertibleResidualBlock, conv_residual_net

SHAPES = {"28x28": (1, 28, 28), "32x32": (3, 32, 32)}
TRUNCATIONS = (2, 5, 10, 20)
MODES = ("backprop", "neumann")
RESULTS = Path(__file__).resolve().parent / "results" / "logdet_memory.json"


def build(
    shape: tuple[int, ...], n_terms: int, mode: str, hidden: int, blocks: int, device: torch.device
) -> SequentialFlow:
    torch.manual_seed(0)
    flow = SequentialFlow(*[
        InvertibleResidualBlock(
            conv_residual_net(shape[0], hidden), shape, logdet="unbiased", gradient=mode,
            n_dist="fixed", n_exact_terms=n_terms,
        )
        for _ in range(blocks)
    ]).to(device)
    flow.train()
    flow(torch.zeros(1, *shape, device=device))  # size and converge the power iterations
    refresh_weight_derived_state(flow)
    return flow


def step(flow: SequentialFlow, x: torch.Tensor) -> None:
    z, logdet = flow(x)
    loss = (0.5 * z.pow(2).flatten(1).sum(1) - logdet).mean()
    loss.backward()
    flow.zero_grad(set_to_none=True)


def peak_bytes(flow: SequentialFlow, x: torch.Tensor) -> int:
    if x.is_cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(flow, x)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(flow, x)
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def seconds(flow: SequentialFlow, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(flow, x)
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    method = (
        "torch.cuda.max_memory_allocated" if device.type == "cuda" else "torch.profiler CPU allocator events"
    )
    rows = []
    for name, shape in SHAPES.items():
        x = torch.rand(args.batch, *shape, device=device)
        for n in TRUNCATIONS:
            for mode in MODES:
                flow = build(shape, n, mode, args.hidden, args.blocks, device)
                step(flow, x)  # warm-up (allocator, kernels)
                mib = peak_bytes(flow, x) / 2**20
                rows.append({"input": name, "n": n, "gradient": mode, "peak_mib": round(mib, 2),
                             "seconds": round(seconds(flow, x, args.repeats), 4)})
    command = "python benchmarks/logdet_memory.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    result = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "hidden": args.hidden,
        "blocks": args.blocks,
        "memory_method": method,
        "command": command.strip(),
        "rows": rows,
    }
    print(f"torch {result['torch']} | device {device} ({result['device']}) | threads {result['threads']} | "
          f"batch {args.batch}, {args.blocks} blocks, hidden {args.hidden} | memory: {method}")
    print(f"reproduce: {result['command']}")
    print(f"{'input':>6} {'n':>3} | {'backprop MiB':>12} {'s':>7} | {'neumann MiB':>11} {'s':>7}")
    for name in SHAPES:
        for n in TRUNCATIONS:
            b, m = (
                next(r for r in rows if (r["input"], r["n"], r["gradient"]) == (name, n, g)) for g in MODES
            )
            print(
                f"{name:>6} {n:>3} | {b['peak_mib']:>12.1f} {b['seconds']:>7.3f} | "
                f"{m['peak_mib']:>11.1f} {m['seconds']:>7.3f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
