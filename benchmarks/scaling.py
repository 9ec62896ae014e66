"""DDP scaling on the CPU: training throughput of 1 vs 2 processes (gloo), one thread each.

Each configuration is a real ``torchrun --standalone -m invflow train`` run of a preset; the
throughput is the median of the logged ``images_per_s`` windows after the first (start-up and
data-dependent init excluded), counting the images of all processes. Efficiency is
``throughput(N) / (N · throughput(1))``.

    python benchmarks/scaling.py
    python benchmarks/scaling.py --preset glow-mnist-tiny --steps 200 --data-dir ../shared/data/mnist
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, environment, print_environment, write_results

from invflow.train.metrics import read_metrics
from invflow.train.run_dir import RunDir


def throughput(preset: str, processes: int, steps: int, extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
            "-m",
            "invflow",
            "train",
            preset,
            "--out",
            out,
            "--set",
            f"train.steps={steps}",
            "--set",
            "train.log_every=10",
            "--set",
            "train.eval_batches=1",
            "--set",
            "train.eval_every=100000",
            "--set",
            "train.sample_every=100000",
            "--set",
            "train.checkpoint_every=100000",
            *extra,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        rates = [r["images_per_s"] for r in read_metrics(RunDir(out).metrics) if "images_per_s" in r]
    return statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="glow-mnist-tiny")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    args = parser.parse_args()
    extra = [f"--set={s}" for s in args.set] + (["--data-dir", args.data_dir] if args.data_dir else [])
    meta = environment("cpu", preset=args.preset, steps=args.steps, threads_per_process=1, backend="gloo")
    print_environment(meta)
    rows = []
    for processes in (1, 2):
        rate = throughput(args.preset, processes, args.steps, extra)
        rows.append({"processes": processes, "images_per_s": rate})
        print(f"{processes} process(es): {rate:8.1f} images/s", flush=True)
    efficiency = rows[1]["images_per_s"] / (2 * rows[0]["images_per_s"])
    meta["efficiency_2_vs_1"] = efficiency
    print(f"2-process / 1-process throughput: {rows[1]['images_per_s'] / rows[0]['images_per_s']:.2f}x "
          f"(scaling efficiency {efficiency:.0%})")
    print(f"wrote {write_results(args.out, meta, rows)}")


if __name__ == "__main__":
    main()
