"""What each speed-up of the checkerboard training step buys (`invflow train
resflow-toy-checkerboard`: 16 residual MLP blocks with exact 2D log-dets, batch 500): the step with
everything on against the same step with one piece switched back, paired and interleaved in one
process. Variants:

- ``reverse-mode log-det``: the exact log-det from one vector–Jacobian product per row and a
  double backward to train (``logdet.exact_logdet``), instead of the Jacobian carried forward
  with the activations (``residual/forward_jacobian.py``);
- ``per-parameter Adam``: ``torch.optim.Adam``'s default loop instead of the fused kernel;
- ``AveragedModel EMA``: ``AveragedModel.update_parameters`` instead of ``update_ema``'s two
  multi-tensor calls;
- ``all three``: the step as it was before these changes.

A step is forward, backward, Adam and the EMA update on one fixed batch. Per round every variant
and the all-on step run, alternating which goes first; the figure is the median over rounds of
(variant seconds / all-on seconds) in process CPU time, on the preset's one thread.

    python benchmarks/checkerboard_step.py --rounds 15
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from common import RESULTS, environment, print_environment, write_results

from invflow.models import build_model, load_config
from invflow.train.ema import make_ema, update_ema

PRESET = "resflow-toy-checkerboard"


def averaged_model_update(ema, model) -> None:
    """The EMA update before: ``AveragedModel.update_parameters``, then the buffers one by one."""
    with torch.no_grad():
        ema.update_parameters(model)
        for ema_buffer, buffer in zip(ema.module.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)


def make_step(x: torch.Tensor, reverse: bool, fused: bool, new_ema: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_model(load_config(PRESET))
    for block in model.blocks():
        block.carries_jacobian = not reverse  # False: the reverse-mode rows (``exact_logdet``)
    adam = {"fused": True} if fused else {"foreach": False}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **adam)
    ema = make_ema(model, 0.99)

    def step() -> None:
        loss = -model.log_prob(x).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        (update_ema if new_ema else averaged_model_update)(ema, model)

    return step


VARIANTS = {
    "reverse-mode log-det": {"reverse": True, "fused": True, "new_ema": True},
    "per-parameter Adam": {"reverse": False, "fused": False, "new_ema": True},
    "AveragedModel EMA": {"reverse": False, "fused": True, "new_ema": False},
    "all three (the step before)": {"reverse": True, "fused": False, "new_ema": False},
}


def cpu_seconds(fn: Callable[[], None]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = environment("cpu", preset=PRESET, rounds=args.rounds, warmup=args.warmup)
    print_environment(meta)
    torch.manual_seed(1)
    batch = torch.rand(load_config(PRESET).data.batch_size, 2) * 8 - 4
    base = make_step(batch, reverse=False, fused=True, new_ema=True)
    variants = {name: make_step(batch, **kw) for name, kw in VARIANTS.items()}
    for _ in range(args.warmup):
        base()
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {"all on": [], **{name: [] for name in variants}}
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, fn in (variants.items() if r % 2 else reversed(list(variants.items()))):
            pair = [("all on", base), (name, fn)] if r % 2 else [(name, fn), ("all on", base)]
            got = {n: cpu_seconds(f) for n, f in pair}
            times["all on"].append(got["all on"])
            times[name].append(got[name])
            ratios[name].append(got[name] / got["all on"])
    rows = [{"variant": "all on", "median_cpu_s": statistics.median(times["all on"]), "slowdown": 1.0}]
    rows += [{"variant": name, "median_cpu_s": statistics.median(times[name]),
              "slowdown": statistics.median(ratios[name]), "ratio_min": min(ratios[name]),
              "ratio_max": max(ratios[name])} for name in variants]
    print("| step | median CPU s | variant / all-on (median, min–max) |\n|---|---|---|")
    for row in rows:
        spread = f" ({row['ratio_min']:.2f}–{row['ratio_max']:.2f})" if "ratio_min" in row else ""
        print(f"| {row['variant']} | {row['median_cpu_s']:.4f} | {row['slowdown']:.2f}×{spread} |")
    write_results(RESULTS / "checkerboard_step.json", meta, rows)


if __name__ == "__main__":
    main()
