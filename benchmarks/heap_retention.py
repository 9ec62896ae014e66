"""What ``train.retain_freed_memory`` (``invflow.train.heap``) buys a training step.

The setting is process-wide, so the two sides cannot share a process: each round starts two
fresh processes, one with the setting and one without (the order alternating), each builds the
``efficiency.py`` step (``glow`` or ``resflow``, batch 64 unless ``--batch``, MNIST-shaped data,
same seed), takes ``--warmup`` steps and times ``--steps`` more; the figure is the median over ``--rounds``
of the per-round ratio (seconds without / seconds with: > 1 means the setting is faster), with
page faults and system seconds per step and the peak resident memory of each side.

    python benchmarks/heap_retention.py --threads 1
    python benchmarks/heap_retention.py --threads 2 --cases glow --rounds 16

Prints a table and writes ``benchmarks/results/heap_retention_<threads>t.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import RESULTS, environment, print_environment, write_results

DEFAULT_STEPS = {"glow": 8, "resflow": 4}

# one side of a round, in its own process: the median step and what the process paid for it
_SIDE = """
import json, resource, sys
import torch
sys.path.insert(0, sys.argv[1])
from invflow.train.heap import retain_freed_memory
case, threads, retain = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
warmup, steps, batch = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
threshold = retain_freed_memory() if retain else None
from efficiency import CASES, median_seconds
from reference_models import MNIST_SHAPE
from vs_reference import data_init, training_step
torch.set_num_threads(threads)
torch.manual_seed(0)
c = CASES[case]()
x = torch.rand(batch, *MNIST_SHAPE, generator=torch.Generator().manual_seed(0))
data_init((c,), x)
step = training_step(c, x)
for _ in range(warmup):
    step()
before = resource.getrusage(resource.RUSAGE_SELF)
seconds, _ = median_seconds(step, steps, warmup=0)
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"step_s": seconds,
                  "faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
                  "sys_s_per_step": (after.ru_stime - before.ru_stime) / steps,
                  "peak_rss_mb": after.ru_maxrss / 1024, "mmap_threshold": threshold}))
"""


def side(case: str, retain: bool, args: argparse.Namespace) -> dict:
    steps = args.steps or DEFAULT_STEPS[case]
    out = subprocess.run(
        [sys.executable, "-c", _SIDE, str(Path(__file__).resolve().parent), case, str(args.threads),
         str(int(retain)), str(args.warmup), str(steps), str(args.batch)],
        capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(case: str, args: argparse.Namespace) -> dict:
    rounds = []
    for r in range(args.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        result = {retain: side(case, retain, args) for retain in order}
        rounds.append({"default": result[False], "retained": result[True],
                       "ratio": result[False]["step_s"] / result[True]["step_s"]})
    ratios = [r["ratio"] for r in rounds]

    def median(side_name: str, key: str) -> float:
        return statistics.median(r[side_name][key] for r in rounds)

    row = {"case": case, "threads": args.threads, "rounds": args.rounds, "speedup": statistics.median(ratios),
           "speedup_min": min(ratios), "speedup_max": max(ratios),
           **{f"{s}_{k}": median(s, k) for s in ("default", "retained")
              for k in ("step_s", "faults_per_step", "sys_s_per_step", "peak_rss_mb")},
           "per_round": rounds}
    print(f"{case:8s} {row['default_step_s']:8.3f}s {row['retained_step_s']:8.3f}s "
          f"{row['speedup']:6.3f}x [{row['speedup_min']:.3f}, {row['speedup_max']:.3f}]  faults/step "
          f"{row['default_faults_per_step']:8.0f} -> {row['retained_faults_per_step']:6.0f}  sys/step "
          f"{1e3 * row['default_sys_s_per_step']:5.1f} -> {1e3 * row['retained_sys_s_per_step']:4.1f} ms  "
          f"peak RSS {row['default_peak_rss_mb']:5.0f} -> {row['retained_peak_rss_mb']:5.0f} MB")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(DEFAULT_STEPS), default=sorted(DEFAULT_STEPS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, help="timed steps per process (default: glow 8, resflow 4)")
    parser.add_argument("--out", help="result file (default: results/heap_retention_<threads>t.json)")
    args = parser.parse_args(argv)
    meta = environment("cpu", load_average=os.getloadavg()[0], threads=args.threads)
    print_environment(meta)
    print(f"{'case':8s} {'default':>9s} {'retained':>9s} {'speedup':>7s}  (median of per-round ratios)")
    rows = [measure(case, args) for case in args.cases]
    out = Path(args.out) if args.out else RESULTS / f"heap_retention_{args.threads}t.json"
    print(f"wrote {write_results(out, meta, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
