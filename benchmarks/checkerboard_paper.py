"""Chen et al. 2019, app. D, Fig. 12 on this machine: the checkerboard with 200 residual blocks and
brute-force log-determinants, p = 2 (paper: 5.13 bits) and p = inf (paper: 5.09 bits).

The runs take hours on a CPU (about 3 s a step on one thread, 10,000 steps each), so this script
has two halves. ``train`` trains or resumes each preset in ``runs/checkerboard-paper-<p>`` (the
presets checkpoint every 10 minutes; stop it at any time and run it again to go on). ``report``
reads whatever the runs have reached — finished or not — and writes
``benchmarks/results/checkerboard_paper.json`` (per preset: steps done, the latest and best held-out
bits with their standard error against the paper's, the CPU and wall seconds spent, summed over
the sessions) and ``checkerboard_paper.png`` (data, model density and samples, one row per
preset, as Fig. 12 shows the data beside the two densities), plus the same for any extra run
directories given with ``--also`` (e.g. the fast ``resflow-toy-checkerboard-long`` preset).

    python benchmarks/checkerboard_paper.py train [--presets pinf p2]
    python benchmarks/checkerboard_paper.py report [--also runs/resflow-toy-checkerboard-long]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import RESULTS, environment, print_environment, train_run, write_results

from invflow.api import load_model
from invflow.data.toy2d import checkerboard
from invflow.train.metrics import read_metrics
from invflow.train.run_dir import RunDir
from invflow.train.sampling import TOY_DATA, TOY_SAMPLES
from invflow.viz.density2d import DensityRow, density_rows_png

PAPER_BITS = {"p2": 5.13, "pinf": 5.09}  # Fig. 12
PRESET = "resflow-toy-checkerboard-paper-{}"


def run_dir(runs: Path, which: str) -> Path:
    return runs / f"checkerboard-paper-{which}"


def progress(run: Path) -> dict:
    """Steps, held-out bits (latest and best) and seconds spent, over every session of ``run``.

    Each session's clocks start at zero, so a session's time is its last record's; sessions are
    told apart by the clock going back."""
    records = read_metrics(RunDir(run).metrics)
    train = [r for r in records if r["split"] == "train"]
    tests = [r for r in records if r["split"] == "test"]
    cpu = wall = 0.0
    for previous, record in zip(train, train[1:] + [None]):
        if record is None or record["cpu_s"] < previous["cpu_s"]:
            cpu, wall = cpu + previous["cpu_s"], wall + previous["elapsed_s"]
    row = {"run": str(run), "steps_done": train[-1]["step"] if train else 0, "cpu_s": round(cpu),
           "wall_s": round(wall), "evaluations": [(r["step"], r["bits"], r["bits_stderr"]) for r in tests]}
    if tests:
        best = min(tests, key=lambda r: r["bits"])
        row.update(latest_bits=tests[-1]["bits"], latest_stderr=tests[-1]["bits_stderr"],
                   latest_step=tests[-1]["step"], best_bits=best["bits"], best_stderr=best["bits_stderr"],
                   best_step=best["step"])
    return row


def density_row(run: Path, label: str) -> DensityRow:
    loaded = load_model(run)
    model = loaded.model
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    with torch.no_grad():
        samples = model.sample((TOY_SAMPLES,))
    return DensityRow(label, lambda x: model.log_prob(x), samples, checkerboard(TOY_DATA, generator))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["train", "report"])
    parser.add_argument("--presets", nargs="+", choices=sorted(PAPER_BITS), default=["pinf", "p2"])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--also", nargs="*", type=Path, default=[], help="more checkerboard runs to report")
    args = parser.parse_args()
    if args.action == "train":
        for which in args.presets:
            train_run(PRESET.format(which), run_dir(args.runs, which))
        return
    meta = environment()
    print_environment(meta)
    rows, density = [], []
    runs = [(PRESET.format(w), run_dir(args.runs, w), PAPER_BITS[w]) for w in args.presets]
    runs += [(run.name, run, None) for run in args.also]
    for name, run, paper in runs:
        if not RunDir(run).metrics.is_file():
            print(f"{name}: no run in {run} yet")
            continue
        row = {"preset": name, "paper_bits": paper, **progress(run)}
        rows.append(row)
        if "latest_bits" not in row:
            print(f"{name}: {row['steps_done']} steps, no evaluation yet")
            continue
        print(f"{name}: step {row['latest_step']}: {row['latest_bits']:.4f} ± {row['latest_stderr']:.4f} bits"
              f" (best {row['best_bits']:.4f} at step {row['best_step']}; paper {paper}), "
              f"{row['cpu_s'] / 3600:.2f} CPU-h")
        label = f"{name.removeprefix('resflow-toy-checkerboard-')}: {row['latest_bits']:.3f} bits" + (
            f" (paper {paper})" if paper else "")
        density.append(density_row(run, label))
    print("wrote", write_results(RESULTS / "checkerboard_paper.json", meta, rows))
    if density:
        (RESULTS / "checkerboard_paper.png").write_bytes(density_rows_png(density, resolution=150))
        print("wrote", RESULTS / "checkerboard_paper.png")


if __name__ == "__main__":
    main()
