"""Paired learning curves for ``vs_reference.py --learning``: invflow and the reference trained in
one process on the same MNIST batches in the same order, with the same dequantization noise,
Adam (lr 1e-3, linear warm-up over 100 steps), global-norm clipping at 100, the loss in bits/dim
(``--loss bpd``) or in nats (``--loss nats``, ``-log_prob(x).mean()``), each evaluated on the
same 1,000 test images with the same noise. Writes JSON and a PNG of both curves."""
from __future__ import annotations

import argparse
import math
import time

import torch
from common import RESULTS, environment, print_environment, write_results
from reference_models import (
    GLOW_SIZES,
    MNIST_SHAPE,
    RESFLOW_SIZES,
    Contender,
    invflow_glow,
    invflow_resflow,
    reference_glow,
    reference_resflow,
)

from invflow.data import load_image_split

WARMUP = 100
LR = 1e-3
CLIP = 100.0
BATCH = 64
TEST_IMAGES = 1000
DIMS = math.prod(MNIST_SHAPE)


def bits_per_dim(log_prob: torch.Tensor) -> torch.Tensor:
    return (-log_prob / DIMS + 8 * math.log(2)) / math.log(2)


def evaluate(c: Contender, x_test: torch.Tensor) -> float:
    """Mean test bits/dim in eval mode, in batches of 100 (the residual flows estimate the log-det
    with 20 + N terms)."""
    c.model.eval()
    total = 0.0
    with torch.no_grad():
        for chunk in x_test.split(100):
            total += float(bits_per_dim(c.log_prob(chunk)).sum())
    c.model.train()
    return total / x_test.shape[0]


def largest_gradients(model: torch.nn.Module, top: int = 5) -> list[dict]:
    """The ``top`` parameters by gradient norm, with their share of the squared global norm."""
    norms = {n: float(p.grad.norm()) for n, p in model.named_parameters() if p.grad is not None}
    total = sum(v * v for v in norms.values())
    ranked = sorted(norms.items(), key=lambda kv: -kv[1])[:top]
    return [{"parameter": n, "norm": v, "share_of_squared_norm": v * v / total} for n, v in ranked]


def train_pair(pair: tuple[Contender, Contender], steps: int, loss_kind: str, data: torch.Tensor,
               x_test: torch.Tensor, checkpoints: list[int], seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    optimizers = [torch.optim.Adam(c.model.parameters(), lr=LR) for c in pair]
    curves = {c.name: [] for c in pair}
    grad_norms = {c.name: [] for c in pair}
    seconds = {c.name: 0.0 for c in pair}
    largest_first = {}
    for step in range(1, steps + 1):
        idx = torch.randint(0, data.shape[0], (BATCH,), generator=gen)
        x = (data[idx].float() + torch.rand(BATCH, *MNIST_SHAPE, generator=gen)) / 256
        for c, opt in zip(pair, optimizers):
            start = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = LR * min(1.0, step / WARMUP)
            log_prob = c.log_prob(x)
            loss = bits_per_dim(log_prob).mean() if loss_kind == "bpd" else -log_prob.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if step == 1:
                largest_first[c.name] = largest_gradients(c.model)
            grad_norms[c.name].append(float(torch.nn.utils.clip_grad_norm_(c.model.parameters(), CLIP)))
            opt.step()
            c.after_step()
            seconds[c.name] += time.perf_counter() - start
        if step in checkpoints:
            for c in pair:
                curves[c.name].append({"step": step, "test_bpd": evaluate(c, x_test)})
            print(
                f"step {step}: " + ", ".join(f"{n} {v[-1]['test_bpd']:.3f} bpd" for n, v in curves.items()),
                flush=True,
            )
    return {"curves": curves, "grad_norm_first": {n: v[0] for n, v in grad_norms.items()},
            "grad_norm_median": {n: sorted(v)[len(v) // 2] for n, v in grad_norms.items()},
            "grad_norm_max": {n: max(v) for n, v in grad_norms.items()},
            "grad_norm_by_step": grad_norms, "largest_gradients_first_step": largest_first,
            "train_seconds": seconds}


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        for name, curve in row["curves"].items():
            ax.plot([p["step"] for p in curve], [p["test_bpd"] for p in curve], marker="o", label=name)
        ax.set_title(f"{row['model']} (loss in {row['loss']})")
        ax.set_xlabel("training step")
        ax.set_ylabel("test bits/dim")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run_learning(args: argparse.Namespace) -> int:
    data = load_image_split("mnist", "train", args.data_dir).images
    test = load_image_split("mnist", "test", args.data_dir).images[:TEST_IMAGES]
    gen = torch.Generator().manual_seed(12345)
    x_test = (test.float() + torch.rand(test.shape, generator=gen)) / 256
    meta = environment(
        "cpu", loss=args.loss, lr=LR, warmup=WARMUP, clip=CLIP, batch=BATCH, test_images=TEST_IMAGES,
        init_seed=args.init_seed,
    )
    print_environment(meta)
    rows = []
    for model in args.models:
        torch.manual_seed(args.init_seed)  # both models' initialisation; the batches always come from seed 7
        if model == "glow":
            pair = (invflow_glow(GLOW_SIZES["small"]), reference_glow(GLOW_SIZES["small"]))
            steps = args.glow_steps
        else:
            pair = (
                invflow_resflow(RESFLOW_SIZES["small"]),
                reference_resflow(args.resflow_ref, RESFLOW_SIZES["small"], BATCH),
            )
            steps = args.resflow_steps
        checkpoints = sorted({s for s in (steps // 4, steps // 2, steps) if s > 0})
        result = train_pair(pair, steps, args.loss, data, x_test, checkpoints, seed=7)
        rows.append({"model": model, "loss": args.loss, "steps": steps,
                     "params": {c.name: c.parameters for c in pair}} | result)
    stem = args.out or f"vs_reference_learning_{args.loss}"
    path = write_results(RESULTS / f"{stem}.json", meta, rows)
    plot(rows, RESULTS / f"{stem}.png")
    for row in rows:
        final = {n: c[-1]["test_bpd"] for n, c in row["curves"].items()}
        print(
            f"{row['model']} after {row['steps']} steps: "
            + ", ".join(f"{n} {v:.3f}" for n, v in final.items())
        )
    print(f"written {path} and {path.with_suffix('.png')}")
    return 0
