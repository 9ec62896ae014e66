"""Training throughput: images/s and peak memory of one optimizer step per preset, and the hours
the preset's ``train.steps`` take at that speed.

Each step is the loop's own work: bits/dim of a dequantized batch, backward, Adam step. Images
are random integers of the preset's shape (throughput does not depend on pixel values), so no
data files are needed. ``hours_for_preset_steps`` is ``train.steps`` x the median step time;
``steps_source`` quotes the preset's comment on that number (the paper's count, or "chosen"
where the paper states none).

    python benchmarks/train_throughput.py                         # glow-mnist-tiny on the CPU
    python benchmarks/train_throughput.py --presets glow-mnist glow-mnist-tiny --steps 5
"""
from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

import torch
from common import RESULTS, environment, print_environment, write_results

import invflow
import invflow.configs
from invflow.compare.measure import peak_step_bytes, synthetic_batch, training_step

PRESETS = Path(invflow.configs.__file__).resolve().parent


def steps_source(preset: str) -> str:
    """The comment beside ``train.steps`` in the preset's YAML or the nearest base's that sets it."""
    name: str | None = preset
    while name:
        text = (PRESETS / f"{name}.yaml").read_text()
        train = re.search(r"^train:\n((?:[ #].*\n?)*)", text, re.M)
        steps = re.search(r"^ +steps: *\d+ *(?:# *(.*))?$", train.group(1), re.M) if train else None
        if steps:
            return f"{name}.yaml: {steps.group(1) or 'no comment'}"
        base = re.search(r"^base: *(\S+)", text, re.M)
        name = base.group(1) if base else None
    return "the config's default"


def measure(preset: str, steps: int, device: torch.device, compiled: bool) -> dict:
    config = invflow.load_config(preset)
    torch.manual_seed(0)
    model = invflow.build_model(config).to(device)
    if compiled and model.compile_unsupported:
        return {"preset": preset, "mode": "compiled", "status": f"refused: {model.compile_unsupported}"}
    batch = synthetic_batch(config, model.input_shape, device)
    step = training_step(model, config, batch, model.compile_for_training(model) if compiled else None)
    with torch.no_grad():
        model.make_objective(config.data.n_bits).loss(model, batch)  # data-dependent init, eagerly
    start = time.perf_counter()
    step()  # warm-up (and compilation)
    warmup = time.perf_counter() - start
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    # On the CPU compiled kernels allocate outside the dispatcher, which the accounting sees.
    peak = float("nan") if compiled and device.type == "cpu" else peak_step_bytes(step, device)
    seconds = statistics.median(times)
    return {
        "preset": preset,
        "device": device.type,
        "mode": "compiled" if compiled else "eager",
        "status": "ok",
        "first_step_s": warmup,
        "batch": config.data.batch_size,
        "params": sum(p.numel() for p in model.parameters()),
        "step_s": seconds,
        "images_per_s": config.data.batch_size / seconds,
        "peak_mb": peak / 2**20,
        "train_steps": config.train.steps,
        "steps_source": steps_source(preset),
        "hours_for_preset_steps": config.train.steps * seconds / 3600,
        "hours_per_100k_steps": 1e5 * seconds / 3600,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["glow-mnist-tiny"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compile", action="store_true",
                        help="also measure torch.compile (FlowModel.compile_for_training)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=str(RESULTS / "train_throughput.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    meta = environment(
        device,
        steps=args.steps,
        memory="peak tensor bytes allocated in one step"
        + (" (CUDA allocator)" if device.type == "cuda" else " (dispatch-mode accounting)"),
    )
    print_environment(meta)
    rows = []
    print(f"{'preset':32s} {'mode':9s} {'batch':>5s} {'params':>10s} {'1st step s':>10s} {'step ms':>9s} "
          f"{'images/s':>9s} {'peak MB':>9s} {'steps':>8s} {'hours':>7s}")
    for preset in args.presets:
        for compiled in (False, True) if args.compile else (False,):
            row = measure(preset, args.steps, device, compiled)
            rows.append(row)
            if row["status"] != "ok":
                print(f"{preset:32s} {row['mode']:9s} {row['status']}", flush=True)
                continue
            print(
                f"{preset:32s} {row['mode']:9s} {row['batch']:5d} {row['params']:10d} "
                f"{row['first_step_s']:10.1f} "
                f"{row['step_s'] * 1e3:9.1f} {row['images_per_s']:9.1f} {row['peak_mb']:9.1f} "
                f"{row['train_steps']:8d} {row['hours_for_preset_steps']:7.1f}",
                flush=True,
            )
    print(f"wrote {write_results(Path(args.out), meta, rows)}")


if __name__ == "__main__":
    main()
