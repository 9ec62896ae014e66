"""bf16 autocast and ``torch.compile`` against the eager fp32 training step, one preset at a time.

Copies of one initialised model (three eager steps in, so the couplings are no longer the
identity they start as) train on the same random batch: eager fp32, bf16 (the coupling
conditioners under autocast, ``FlowModel.set_conditioner_precision``, as ``train.precision=bf16``
runs them; log-dets, invertible maps and the prior stay fp32) and compiled
(``FlowModel.compile_for_training``, as ``train.compile=true``: the whole model for the Glow family,
each block's log-det series for residual flows). Each variant is timed against eager in paired
rounds (one step of each, the order alternating, both on the same random draws: the i-th call of
each is seeded with i, so a residual step draws the same series length in both); its speed-up is
the median over rounds of eager seconds / variant seconds. Before any step, each variant's
per-image log-density of the same batch and dequantization noise is compared with eager's
(``log_prob_max_diff_nats``, the largest difference over the batch; ``loss_diff_vs_eager``, the
batch's bits/dim): a speed-up that changes results shows there. A family that refuses a variant
(residual flows refuse bf16) gets a row that says why.

    python benchmarks/precision_compile.py --device cuda --presets woodbury-glow-cifar10 resflow-cifar10
    python benchmarks/precision_compile.py --presets resflow-mnist-tiny --threads 1
    python benchmarks/precision_compile.py --presets glow-mnist-tiny --rounds 3   # a CPU dry run

The result file is rewritten after every row, so an interrupted run (a compilation that outlasts
its time limit) keeps what it measured.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import RESULTS, environment, paired_seconds, print_environment, synchronizer, write_results

import invflow
from invflow.compare.measure import synthetic_batch, training_step
from invflow.core.objectives import nats_to_bits_per_dim

VARIANTS = ("eager", "bf16", "compiled")


def refusal(model: invflow.FlowModel, variant: str) -> str | None:
    """Why the model's family does not run ``variant``; None when it does."""
    if variant == "bf16":
        return model.low_precision_unsupported
    if variant == "compiled":
        return model.compile_unsupported
    return None


def prepare(model: invflow.FlowModel, variant: str, config, batch) -> tuple[Callable[[], None], Callable]:
    """A training step of ``variant`` on its own copy of ``model``, and its per-image log-density
    of the batch (the loss's input)."""
    forward = model
    if variant == "bf16":
        model.set_conditioner_precision(torch.bfloat16)
    elif variant == "compiled":
        forward = model.compile_for_training(model)
    objective = model.make_objective(config.data.n_bits)

    def log_prob() -> torch.Tensor:
        return forward(objective.model_input(model, batch), model.batch_context(batch))[0].detach()

    return training_step(model, config, batch, None if variant != "compiled" else forward), log_prob


def same_draws(step: Callable[[], None]) -> Callable[[], None]:
    """``step`` with its i-th call seeded with i (two such wrappers draw alike, call for call)."""
    calls = itertools.count()

    def seeded() -> None:
        torch.manual_seed(next(calls))
        step()

    return seeded


def paired(eager: Callable[[], None], variant: Callable[[], None], rounds: int, warmup: int,
           sync: Callable[[], None]) -> dict:
    """Median over rounds of eager seconds / variant seconds (:func:`common.paired_seconds`)."""
    t_eager, t_variant = paired_seconds(same_draws(eager), same_draws(variant), rounds, warmup, sync)
    ratios = [e / v for e, v in zip(t_eager, t_variant)]
    return {"step_s": statistics.median(t_variant), "eager_step_s": statistics.median(t_eager),
            "speedup_vs_eager": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "rounds": rounds}


def measure(preset: str, device: torch.device, rounds: int, warmup: int,
            emit: Callable[[dict], None]) -> None:
    """Each variant of ``preset`` against eager, one row at a time (``emit``): bf16 is measured and
    kept before a slow compilation starts."""
    config = invflow.load_config(preset)
    torch.manual_seed(0)
    base = invflow.build_model(config).to(device).train()
    batch = synthetic_batch(config, base.input_shape, device, torch.Generator().manual_seed(1),
                            base.context_spec)
    with torch.no_grad():
        base.make_objective(config.data.n_bits).loss(base, batch)  # data-dependent init, eagerly
    pretrain = training_step(base, config, batch)
    for _ in range(3):  # off the zero-initialised couplings, where every precision gives the same loss
        pretrain()
    sync = synchronizer(device)
    eager_step, eager_log_prob, eager_bits = None, None, None
    for variant in VARIANTS:
        row = {"preset": preset, "variant": variant, "batch": config.data.batch_size}
        reason = refusal(base, variant)
        if reason:
            emit(row | {"status": f"refused: {reason}"})
            continue
        model = copy.deepcopy(base)
        step, log_prob = prepare(model, variant, config, batch)
        torch.manual_seed(2)  # the same dequantization noise for every variant
        sync()
        start = time.perf_counter()
        first = log_prob()
        step()  # the first step: compilation happens here
        sync()
        row |= {"status": "ok", "first_step_s": time.perf_counter() - start,
                "loss": float(nats_to_bits_per_dim(first, model.dims, config.data.n_bits).mean())}
        if variant == "eager":
            eager_step, eager_log_prob, eager_bits = step, first, row["loss"]
            emit(row)
            continue
        row |= {"loss_diff_vs_eager": row["loss"] - eager_bits,
                "log_prob_max_diff_nats": float((first - eager_log_prob).abs().max())}
        emit(row | paired(eager_step, step, rounds, warmup, sync))


def print_row(r: dict) -> None:
    if r["status"] != "ok":
        print(f"{r['preset']:28s} {r['variant']:9s} {r['status']}", flush=True)
    elif r["variant"] == "eager":
        print(f"{r['preset']:28s} {r['variant']:9s} first step {r['first_step_s']:6.1f} s  "
              f"loss {r['loss']:.4f} bits/dim", flush=True)
    else:
        print(f"{r['preset']:28s} {r['variant']:9s} step {r['step_s'] * 1e3:8.1f} ms  "
              f"{r['speedup_vs_eager']:5.2f}x [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}]  "
              f"first step {r['first_step_s']:6.1f} s  loss diff {r['loss_diff_vs_eager']:+.2e} bits/dim, "
              f"log p diff <= {r['log_prob_max_diff_nats']:.2e} nats",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["glow-mnist-tiny"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=str(RESULTS / "precision_compile.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = environment(device, rounds=args.rounds, warmup=args.warmup)
    print_environment(meta)
    rows: list[dict] = []

    def emit(row: dict) -> None:
        rows.append(row)
        print_row(row)
        write_results(Path(args.out), meta, rows)

    for preset in args.presets:
        measure(preset, device, args.rounds, args.warmup, emit)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
