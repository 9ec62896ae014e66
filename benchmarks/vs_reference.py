"""invflow against the reference implementations, side by side in one process.

Residual Flow against rtqichen/residual-flows (a checkout passed with ``--resflow-ref``), Glow
against normflows 1.7.3 (installed). Both implementations are built in this process on the same
batch; after warm-up steps, each of ``--rounds`` rounds times one call of each, alternating which
goes first, and the reported figure is the median of the per-round ratios (reference seconds /
invflow seconds: > 1 means invflow is faster), so machine load hits both alike.

    python benchmarks/vs_reference.py --resflow-ref ../residual-flows                 # all speed cases
    python benchmarks/vs_reference.py --resflow-ref ../residual-flows --cases resflow glow
    python benchmarks/vs_reference.py --resflow-ref ../residual-flows --learning --data-dir DIR

Speed cases: ``resflow`` / ``glow`` (training steps at the small configuration), ``resflow-full``
(resflow-mnist blocks at batch 8), ``glow-full`` (glow-mnist), ``resflow-compiled`` (the
``resflow`` step with invflow's ``--compile``, against the reference's eager step: it has no
compiled path), ``glow-compiled`` (the ``glow`` step with invflow's ``--compile`` against
normflows' eager step), ``glow-compiled-both`` (normflows' ``log_prob`` through
``torch.compile`` too; each side compiled after its first, data-initialising call, as ``invflow
train`` compiles), ``resflow-full-compiled`` / ``glow-full-compiled`` (the full sizes with
invflow's ``--compile``), ``resflow-eval`` (``model.eval()``
log-density, 20 + N series terms), ``resflow-sample`` (64 images by fixed-point inverse), and
``resflow-memory`` (peak tensor memory of one training step). Each training case also records
the peak memory of one step of each (``torch.cuda.max_memory_allocated`` on CUDA, tensor
accounting on the CPU). ``--device cuda`` runs everything on the GPU (timings synchronise the
device around each call); ``benchmarks/gpu_check.py`` runs it so. ``--retain-freed-memory`` sets
``invflow train``'s allocator setting (``train.retain_freed_memory``) for the process, so both
implementations run with it. Both steps use fused Adam, as ``invflow train`` does (``--adam loop``:
torch's per-parameter default on the CPU, what every figure measured before this option used).
``--learning`` trains both on the same MNIST batches instead (see ``vs_reference_learning.py``).
A missing reference: exit 2.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from common import (
    RESULTS,
    PeakTensorMemory,
    environment,
    paired_seconds,
    print_environment,
    ratio_summary,
    synchronizer,
    write_results,
)
from reference_models import (
    GLOW_SIZES,
    MNIST_SHAPE,
    RESFLOW_SIZES,
    Contender,
    MissingReference,
    invflow_glow,
    invflow_resflow,
    reference_glow,
    reference_resflow,
)

from invflow.compare.measure import peak_step_bytes
from invflow.train.heap import retain_freed_memory

CASES = ("resflow", "glow", "resflow-eval", "resflow-sample", "resflow-memory", "resflow-full", "glow-full",
         "resflow-compiled", "glow-compiled", "glow-compiled-both", "resflow-full-compiled",
         "glow-full-compiled")
LR = 1e-3
GRAD_CLIP = 100.0


def bits_per_dim_loss(log_prob: torch.Tensor) -> torch.Tensor:
    """Mean bits/dim of dequantized 8-bit MNIST from nats on [0, 1] data."""
    dims = MNIST_SHAPE[0] * MNIST_SHAPE[1] * MNIST_SHAPE[2]
    return (-log_prob.mean() / dims + 8 * torch.log(torch.tensor(2.0))) / torch.log(torch.tensor(2.0))


#: ``--adam`` choices: ``fused`` is torch's one-kernel Adam over all parameters, what ``invflow train``
#: uses (``invflow.train.optimizer.make_adam``); ``loop`` is ``torch.optim.Adam``'s default on the
#: CPU, a dozen small operator calls per parameter tensor (about 10 ms of a Glow step on one
#: thread, for either implementation). Both implementations always get the same one.
ADAM_KINDS = ("fused", "loop")


def training_step(c: Contender, x: torch.Tensor, adam: str = "fused") -> Callable[[], None]:
    """One step as both training scripts do it: bits/dim loss, backward, global-norm clip, Adam
    (``adam``: one of :data:`ADAM_KINDS`), then the implementation's after-step hook
    (spectral-norm refresh for residual flows)."""
    if adam not in ADAM_KINDS:
        raise ValueError(f"adam must be one of {ADAM_KINDS}, got {adam!r}")
    optimizer = torch.optim.Adam(c.model.parameters(), lr=LR, fused=True if adam == "fused" else None)

    def step() -> None:
        loss = bits_per_dim_loss(c.log_prob(x))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(c.model.parameters(), GRAD_CLIP)
        optimizer.step()
        c.after_step()

    return step


def paired(ours: Callable[[], None], theirs: Callable[[], None], rounds: int, warmup: int,
           sync: Callable[[], None] = lambda: None) -> dict:
    """Median over rounds of (theirs seconds / ours seconds) (:func:`common.paired_seconds`)."""
    t_ours, t_theirs = paired_seconds(ours, theirs, rounds, warmup, sync)
    return {"invflow_s": statistics.median(t_ours), "reference_s": statistics.median(t_theirs),
            **ratio_summary(t_ours, t_theirs), "rounds": rounds, "warmup": warmup}


def no_grad(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` run under ``torch.no_grad()`` (evaluation and sampling)."""
    def run() -> None:
        with torch.no_grad():
            fn()
    return run


def build_pair(case: str, args: argparse.Namespace, batch: int) -> tuple[Contender, Contender]:
    """Both implementations of ``case``, on ``args.device``."""
    torch.manual_seed(0)
    # the reference first: a missing one is reported before anything is built
    if case.startswith("glow"):
        size = GLOW_SIZES["full" if case.startswith("glow-full") else "small"]
        theirs = reference_glow(size, compiled=case == "glow-compiled-both")
        torch.manual_seed(0)
        pair = invflow_glow(size, compiled=case.endswith(("-compiled", "-compiled-both"))), theirs
    else:
        size = RESFLOW_SIZES["full" if case.startswith("resflow-full") else "small"]
        theirs = reference_resflow(args.resflow_ref, size, batch)
        torch.manual_seed(0)
        pair = invflow_resflow(size), theirs
        if case.endswith("-compiled"):  # invflow's --compile (the reference has no compiled path)
            pair[0].model.compile_for_training(pair[0].model)
    for c in pair:
        c.model.to(args.device)
    return pair


def data_init(pair: tuple[Contender, Contender], x: torch.Tensor) -> None:
    """One forward each so that data-dependent initialisations (ActNorm) have happened."""
    for c in pair:
        c.model.train()
        c.log_prob(x).sum().backward()
        c.model.zero_grad(set_to_none=True)
        c.after_step()


def measure_case(case: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    batch = args.full_batch if case.startswith("resflow-full") else args.batch
    gen = torch.Generator().manual_seed(1)
    x = ((torch.randint(0, 256, (batch, *MNIST_SHAPE), generator=gen).float() + torch.rand(
        batch, *MNIST_SHAPE, generator=gen)) / 256).to(device)
    ours, theirs = build_pair(case, args, batch)
    data_init((ours, theirs), x)
    row = {"case": case, "batch": batch, "invflow_params": ours.parameters, "reference": theirs.name,
           "reference_params": theirs.parameters}
    if case == "resflow-memory":
        peaks = {}
        for c in (ours, theirs):
            step = training_step(c, x, args.adam)
            step()
            with PeakTensorMemory() as mem:
                step()
            peaks[c.name] = mem.peak
        return row | {
            "invflow_peak_mb": peaks["invflow"] / 2**20,
            "reference_peak_mb": peaks[theirs.name] / 2**20,
            "speedup": peaks[theirs.name] / peaks["invflow"],
        }
    if case in ("resflow-eval", "resflow-sample"):
        for c in (ours, theirs):
            c.model.eval()
        z = torch.randn(64, x[0].numel(), generator=gen).to(device)
        calls = [(lambda c=c: c.log_prob(x)) if case == "resflow-eval" else (lambda c=c: c.inverse(z))
                 for c in (ours, theirs)]
        calls = [no_grad(call) for call in calls]
        return row | paired(*calls, args.rounds, args.warmup, synchronizer(device))
    steps = training_step(ours, x, args.adam), training_step(theirs, x, args.adam)
    timed = paired(*steps, args.rounds, args.warmup, synchronizer(device))
    ours_peak, theirs_peak = (step_peak_mb(step, device) for step in steps)
    return row | timed | {"invflow_step_peak_mb": ours_peak, "reference_step_peak_mb": theirs_peak}


def step_peak_mb(step: Callable[[], None], device: torch.device) -> float:
    """Peak memory of one training step above what was allocated before it (both models'
    parameters and optimizer states), in MiB; run after the warm-up, so the optimizer state
    exists. CUDA: ``torch.cuda.max_memory_allocated``; CPU: the tensors the step creates."""
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    return (peak_step_bytes(step, device) - base) / 2**20


def print_table(rows: list[dict]) -> None:
    print(
        f"{'case':16} {'batch':>5} {'invflow':>11} {'reference':>11} {'speedup':>8}"
        "  (median of per-round ratios)"
    )
    for r in rows:
        if "invflow_peak_mb" in r:
            print(
                f"{r['case']:16} {r['batch']:5d} {r['invflow_peak_mb']:9.1f}MB "
                f"{r['reference_peak_mb']:9.1f}MB "
                f"{r['speedup']:7.2f}x  (peak memory, reference / invflow)"
            )
        else:
            memory = (f"  peak {r['invflow_step_peak_mb']:.0f} / {r['reference_step_peak_mb']:.0f} MB"
                      if "invflow_step_peak_mb" in r else "")
            print(f"{r['case']:16} {r['batch']:5d} {r['invflow_s']:10.3f}s {r['reference_s']:10.3f}s "
                  f"{r['speedup']:7.2f}x  [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] "
                  f"vs {r['reference']}{memory}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resflow-ref", help="checkout of https://github.com/rtqichen/residual-flows")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES[:5]))
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--full-batch", type=int, default=8, help="batch of the resflow-full case")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both")
    parser.add_argument("--retain-freed-memory", action="store_true",
                        help="glibc keeps freed blocks for the whole process, both implementations alike "
                             "(what invflow train does: invflow.train.heap)")
    parser.add_argument("--adam", choices=ADAM_KINDS, default="fused",
                        help="the optimizer of both implementations' steps (ADAM_KINDS; default fused, as "
                             "invflow train; loop: torch's per-parameter default on the CPU)")
    parser.add_argument("--learning", action="store_true", help="paired learning curves on MNIST instead")
    parser.add_argument("--data-dir", help="MNIST files (for --learning)")
    parser.add_argument("--models", nargs="+", choices=("glow", "resflow"), default=["glow", "resflow"],
                        help="--learning: which pairs to train")
    parser.add_argument("--glow-steps", type=int, default=600)
    parser.add_argument("--resflow-steps", type=int, default=300)
    parser.add_argument(
        "--loss", choices=("bpd", "nats"), default="bpd", help="--learning: the loss minimised"
    )
    parser.add_argument("--init-seed", type=int, default=0,
                        help="--learning: torch seed of both models' initialisation (batches: seed 7)")
    parser.add_argument(
        "--out", help="result file stem in --out-dir (default vs_reference[_learning])"
    )
    parser.add_argument("--out-dir", default=str(RESULTS), help="folder of the result file")
    args = parser.parse_args(argv)
    if args.rounds < 12 and not args.learning:
        print(f"vs_reference: --rounds must be >= 12 for a paired median, got {args.rounds}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    mmap_threshold = retain_freed_memory() if args.retain_freed_memory else None
    warnings.filterwarnings("ignore", category=UserWarning)
    try:
        if args.learning:
            from vs_reference_learning import run_learning

            return run_learning(args)
        if args.device == "cuda" and not torch.cuda.is_available():
            print("vs_reference: --device cuda but this machine has no usable CUDA device", file=sys.stderr)
            return 2
        meta = environment(args.device, rounds=args.rounds, warmup=args.warmup,
                           retain_freed_memory=mmap_threshold is not None, adam=args.adam)
        print_environment(meta)
        rows = []
        for case in args.cases:
            rows.append(measure_case(case, args))
            print_table(rows[-1:])
    except MissingReference as e:
        print(f"vs_reference: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"vs_reference: MNIST is missing: {e}; pass --data-dir with the MNIST files", file=sys.stderr)
        return 2
    path = write_results(Path(args.out_dir) / f"{args.out or 'vs_reference'}.json", meta, rows)
    print()
    print_table(rows)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
