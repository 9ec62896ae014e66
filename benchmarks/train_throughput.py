"""Training throughput: images/s and peak memory of one optimizer step per preset.

Each step is the loop's own work: bits/dim of a dequantized batch, backward, Adam step. Images
are random integers of the preset's shape (throughput does not depend on pixel values), so no
data files are needed.

    python benchmarks/train_throughput.py                         # glow-mnist-tiny on the CPU
    python benchmarks/train_throughput.py --presets glow-mnist glow-mnist-tiny --steps 5
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from common import RESULTS, PeakTensorMemory, environment, print_environment, write_results

import invflow
from invflow.models import is_toy
from invflow.train.batches import Batch
from invflow.train.evaluate import make_objective


def make_batch(config, shape: tuple[int, ...], device: torch.device) -> Batch:
    n = config.data.batch_size
    if is_toy(config.data):
        x = torch.randn(n, *shape)
    else:
        x = torch.randint(0, 2**config.data.n_bits, (n, *shape), dtype=torch.uint8)
    return Batch(x.to(device), torch.zeros(n, dtype=torch.long, device=device))


def measure(preset: str, steps: int, device: torch.device) -> dict:
    config = invflow.load_config(preset)
    torch.manual_seed(0)
    model = invflow.build_model(config).to(device)
    objective = make_objective(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    batch = make_batch(config, model.input_shape, device)

    def step() -> None:
        loss, _ = objective.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.after_optimizer_step()

    step()  # data-dependent init and warm-up
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step()
        peak = torch.cuda.max_memory_allocated(device)
    else:
        with PeakTensorMemory() as memory:
            step()
        peak = memory.peak
    seconds = statistics.median(times)
    return {"preset": preset, "batch": config.data.batch_size, "params": sum(p.numel() for p in model.parameters()),
            "step_s": seconds, "images_per_s": config.data.batch_size / seconds, "peak_mb": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["glow-mnist-tiny"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=str(RESULTS / "train_throughput.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    meta = environment(device, steps=args.steps,
                       memory="peak tensor bytes allocated in one step" +
                              (" (CUDA allocator)" if device.type == "cuda" else " (dispatch-mode accounting)"))
    print_environment(meta)
    rows = []
    print(f"{'preset':28s} {'batch':>5s} {'params':>10s} {'step ms':>9s} {'images/s':>9s} {'peak MB':>9s}")
    for preset in args.presets:
        row = measure(preset, args.steps, device)
        rows.append(row)
        print(f"{preset:28s} {row['batch']:5d} {row['params']:10d} {row['step_s'] * 1e3:9.1f} "
              f"{row['images_per_s']:9.1f} {row['peak_mb']:9.1f}", flush=True)
    print(f"wrote {write_results(Path(args.out), meta, rows)}")


if __name__ == "__main__":
    main()
