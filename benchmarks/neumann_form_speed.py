"""The cost of the two Neumann-gradient forms of a residual block (``model.neumann_form``:
``theorem2``, the default, and ``derivative``), paired in one process.

Both models are built from the same seed (the same weights) and each training step of both reseeds
the random number generator with the step's index, so the two draw the same roulette lengths and
probes: the only difference is the form. Each of ``--rounds`` rounds times one step of each,
alternating which goes first; the figure is the median of the per-round ratios (derivative seconds
/ theorem2 seconds: > 1 means theorem2 is faster).

    python benchmarks/neumann_form_speed.py --device cuda --sizes small full --batch 64
    python benchmarks/neumann_form_speed.py --threads 2 --sizes small
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from common import RESULTS, environment, print_environment, synchronizer, write_results
from reference_models import MNIST_SHAPE, RESFLOW_SIZES, invflow_resflow
from vs_reference import paired, training_step

FORMS = ("theorem2", "derivative")


def seeded(step: Callable[[], None]) -> Callable[[], None]:
    """``step`` with the generator reseeded by the call's index before each call."""
    calls = [0]

    def run() -> None:
        torch.manual_seed(calls[0])
        calls[0] += 1
        step()

    return run


def measure(size: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    x = torch.rand(args.batch, *MNIST_SHAPE, generator=torch.Generator().manual_seed(0)).to(device)
    steps = []
    for form in FORMS:
        torch.manual_seed(0)
        contender = invflow_resflow(RESFLOW_SIZES[size], **{"model.neumann_form": form})
        contender.model.to(device).train()
        steps.append(seeded(training_step(contender, x)))
    timed = paired(*steps, args.rounds, args.warmup, synchronizer(device))  # derivative s / theorem2 s
    row = {"size": size, "batch": args.batch, "theorem2_s": timed["invflow_s"],
           "derivative_s": timed["reference_s"],
           **{k: timed[k] for k in ("speedup", "ratio_min", "ratio_max", "rounds")}}
    print(f"{size:6s} batch {args.batch:3d}: theorem2 {row['theorem2_s'] * 1e3:8.1f} ms, derivative "
          f"{row['derivative_s'] * 1e3:8.1f} ms, derivative/theorem2 {row['speedup']:.3f}x "
          f"[{row['ratio_min']:.2f}, {row['ratio_max']:.2f}]", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(RESFLOW_SIZES), default=["small"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "neumann_form_speed.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = environment(args.device, rounds=args.rounds, warmup=args.warmup)
    print_environment(meta)
    rows = [measure(size, args) for size in args.sizes]
    print(f"wrote {write_results(Path(args.out), meta, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
