"""Bits against seconds for residual-flow configurations on the 2D checkerboard (Chen et al. 2019,
app. D: residual blocks, brute-force 2D log-det): which preset reaches the lowest bits within
`invflow train resflow-toy-checkerboard`'s time budget (3 minutes on 2 CPU cores).

Each configuration is a set of overrides of the preset, trained by invflow's own loop with a test
evaluation (EMA weights, the preset's held-out sample) every ``--eval-every`` steps; a point of the
frontier is (seconds since training began, test bits) at each evaluation. Wall seconds depend on
the machine's load, so process CPU seconds are recorded too (one thread: CPU seconds = the time
on an idle core).

    OMP_NUM_THREADS=1 python benchmarks/checkerboard_frontier.py
    OMP_NUM_THREADS=1 python benchmarks/checkerboard_frontier.py --only shipped
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import RESULTS, environment, print_environment, write_results

from invflow.models import load_config
from invflow.train.loop import train
from invflow.train.metrics import read_metrics
from invflow.train.run_dir import RunDir

PRESET = "resflow-toy-checkerboard"
BASE = {"model.blocks_per_scale": 16, "model.hidden_channels": 32, "model.mlp_hidden_layers": 2,
        "model.norm_orders": "f", "data.batch_size": 500, "train.lr": 5e-3, "train.lr_schedule": "cosine",
        "train.ema_decay": 0.99, "train.threads": 1}
# Measured with the forward-mode exact log-det, fused Adam and the multi-tensor EMA update; the
# frontier of the reverse-mode implementation (best: 5.50 bits at 154 CPU-s) is in git history.
CONFIGS: dict[str, dict] = {
    "p=inf, 16x32x2, lr 5e-3 cosine, 2000 steps": {**BASE, "train.steps": 2000},
    "p=inf, 16x64x2, lr 5e-3 cosine, 2000 steps": {**BASE, "model.hidden_channels": 64, "train.steps": 2000},
    "p=inf, 16x32x2, lr 1e-2 cosine, 2000 steps": {**BASE, "train.lr": 1e-2, "train.steps": 2000},
    "p=2, 16x32x2, lr 5e-3 cosine, 2000 steps": {**BASE, "model.norm_orders": "2", "train.steps": 2000},
    "shipped": {},
    # the 10-minute budget of resflow-toy-checkerboard-long (Chen et al. 2019, app. D: 5.09 bits)
    "long: p=inf, 16x32x2, lr 1e-2 cosine, 7000 steps": {**BASE, "train.lr": 1e-2, "train.steps": 7000},
    "long: p=inf, 16x32x2, lr 1e-2 cosine, 12000 steps": {**BASE, "train.lr": 1e-2, "train.steps": 12000},
    "long: p=inf, 32x32x2, lr 1e-2 cosine, 6000 steps": {
        **BASE, "model.blocks_per_scale": 32, "train.lr": 1e-2, "train.steps": 6000},
}


def points_of(run_dir: Path) -> list[dict]:
    """(step, wall s, CPU s, test bits) at every test evaluation of a run directory."""
    records = read_metrics(RunDir(run_dir).metrics)
    clock = {
        r["step"]: (r["elapsed_s"], r["cpu_s"]) for r in records if r["split"] == "train" and "elapsed_s" in r
    }
    return [
        {
            "step": r["step"],
            "wall_s": round(clock[r["step"]][0], 1),
            "cpu_s": round(clock[r["step"]][1], 1),
            "test_bits": round(r["bits"], 4),
            "stderr": round(r["bits_stderr"], 4),
        }
        for r in records
        if r["split"] == "test" and r["step"] in clock
    ]


def frontier(name: str, overrides: dict, eval_every: int, work: Path) -> dict:
    """Train one configuration; return its (seconds, bits) points."""
    overrides = {**overrides, "train.eval_every": eval_every, "train.log_every": eval_every,
                 "train.sample_every": 10**9, "train.checkpoint_every": 10**9, "train.device": "cpu"}
    config = load_config(PRESET, overrides)
    load_before = os.getloadavg()[0]
    result = train(config, work / name.replace(" ", "_").replace("/", "-"), progress=False)
    return {"name": name, "overrides": overrides, "points": points_of(result.run_dir),
            "final_test_bits": round(result.test_value, 4), "total_wall_s": round(result.seconds, 1),
            "load_before": load_before, "load_after": os.getloadavg()[0], "finished": True}


def from_run(run_dir: Path) -> dict:
    """A row from a run directory this script was training (e.g. one stopped for lack of time):
    the configuration is its directory name, the points its evaluations so far."""
    points = points_of(run_dir)
    finished = RunDir(run_dir).last_checkpoint.is_file()
    return {"name": run_dir.name.replace("_", " "), "overrides": None, "points": points,
            "final_test_bits": points[-1]["test_bits"], "total_wall_s": points[-1]["wall_s"],
            "load_before": None, "load_after": os.getloadavg()[0], "finished": finished}


def _bits_by(row: dict, limit: float) -> str:
    """The last test bits a configuration reached within ``limit`` CPU seconds."""
    done = [p["test_bits"] for p in row["points"] if p["cpu_s"] <= limit]
    return f"{done[-1]:.3f}" if done else "—"


LIMITS = (60, 120, 180, 300, 450, 600)  # CPU seconds: the quick preset's 3 minutes, the long one's 10


def table(rows: list[dict]) -> str:
    """Markdown: test bits reached by each of ``LIMITS`` CPU seconds and at the end."""
    lines = ["| configuration | steps | " + " | ".join(f"bits @{t} cpu-s" for t in LIMITS)
             + " | final bits | cpu-s | wall-s |", "|---|---|" + "---|" * len(LIMITS) + "---|---|---|"]
    for row in rows:
        last = row["points"][-1]
        name = row["name"] + ("" if row.get("finished", True) else " (stopped early)")
        by = " | ".join(_bits_by(row, limit) for limit in LIMITS)
        lines.append(f"| {name} | {last['step']} | {by} | "
                     f"{row['final_test_bits']:.3f} | {last['cpu_s']:.0f} | {row['total_wall_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="substrings of configuration names to run")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "checkerboard_frontier.json")
    parser.add_argument("--merge", nargs="*", type=Path, default=[],
                        help="instead of training, merge the rows of these result files into --out")
    parser.add_argument("--from-runs", nargs="*", type=Path, default=[],
                        help="with --merge: also rows read from these (possibly unfinished) run directories")
    args = parser.parse_args()
    meta = environment("cpu", preset=PRESET, load_avg_start=os.getloadavg()[0])
    print_environment(meta)
    rows = []
    if args.merge or args.from_runs:
        import json

        parts = [json.loads(p.read_text()) for p in args.merge]
        meta = {**(parts[0]["meta"] if parts else environment("cpu", preset=PRESET)),
                "merged_from": [p["meta"]["command"] for p in parts] + [str(d) for d in args.from_runs]}
        rows = [row for part in parts for row in part["results"]] + [from_run(d) for d in args.from_runs]
        write_results(args.out, meta, rows)
        args.out.with_suffix(".md").write_text(table(rows) + "\n")
        print(table(rows))
        return
    with tempfile.TemporaryDirectory() as work:
        for name, overrides in CONFIGS.items():
            if args.only and not any(s in name for s in args.only):
                continue
            rows.append(frontier(name, overrides, args.eval_every, Path(work)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    write_results(args.out, meta, rows)
    args.out.with_suffix(".md").write_text(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
