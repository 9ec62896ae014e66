"""Conditional against unconditional on real MNIST: the same preset trained with and without
``model.conditional`` for the same steps on the same batches (the data order is a pure function of
seed and step), then test bits/dim (``−log p(x)`` against ``−log p(x | y)``), the generative
classifier's test accuracy and a ``--classes all`` sample grid per conditional run. The Glow pair
also trains the conditional preset with Glow's per-channel class priors
(``model.context_prior=channel``, the model of invflow 0.3) beside the preset's per-position ones.

    python benchmarks/conditional_mnist.py --data-dir ../shared/data/mnist [--pairs glow resflow]

Each run goes through the CLI (``invflow train`` / ``eval`` / ``sample``) in ``--runs`` (default
``runs/conditional-mnist``); a finished run is not trained again and an interrupted one resumes, so
the script can be stopped and started again. Prints a table and writes
``benchmarks/results/conditional_mnist.json`` and ``conditional_<preset>_classes.png``.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from common import RESULTS, environment, invflow_cli, print_environment, train_run, write_results

from invflow.train.run_dir import RunDir

PER_CHANNEL = ("model.context_prior=channel",)
# per pair: (preset, --set values) of each run
PAIRS = {
    "glow": (("glow-mnist-tiny", ()), ("glow-mnist-cond-tiny", ()), ("glow-mnist-cond-tiny", PER_CHANNEL)),
    "resflow": (("resflow-mnist-tiny", ()), ("resflow-mnist-cond-tiny", ())),
}
# test batches (of 32) evaluated per pair: the generative classifier costs one pass per class
EVAL_BATCHES = {"glow": 100, "resflow": 20}


def evaluate(run: Path, batches: int) -> dict[str, float]:
    """Test bits/dim (mean, s.e.) on the first ``batches`` test batches and, for class-conditional
    runs, the generative classifier's accuracy on them."""
    text = invflow_cli("eval", str(run), "--batches", str(batches))
    bpd = re.search(r"bpd (\d+\.\d+) ± (\d+\.\d+)", text)
    result = {"test_bpd": float(bpd.group(1)), "test_bpd_stderr": float(bpd.group(2))}
    accuracy = re.search(r"accuracy (\d+\.\d+) on (\d+) examples", text)
    if accuracy:
        result.update(generative_accuracy=float(accuracy.group(1)), accuracy_examples=int(accuracy.group(2)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="the MNIST folder")
    parser.add_argument("--runs", type=Path, default=Path("runs/conditional-mnist"))
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=sorted(PAIRS))
    args = parser.parse_args()
    meta = environment(note="each run one process; wall times include evaluation and sample grids")
    print_environment(meta)
    rows = []
    for pair in args.pairs:
        for preset, settings in PAIRS[pair]:
            label = preset + "".join(f" --set {value}" for value in settings)
            name = preset + "".join("_" + value.replace("=", "-") for value in settings)
            run, seconds = train_run(preset, args.runs / name, args.data_dir, *settings)
            row = {"pair": pair, "preset": label, "train_seconds_this_call": round(seconds, 1),
                   "eval_batches": EVAL_BATCHES[pair], **evaluate(run, EVAL_BATCHES[pair])}
            if "cond" in preset:
                grid = RESULTS / f"conditional_{name}_classes.png"
                invflow_cli("sample", str(run), "-n", "100", "--classes", "all", "-o", str(grid), "--force")
                row["classes_grid"] = grid.name
            row["results"] = json.loads(RunDir(run).results.read_text())
            rows.append(row)
    print("\n| preset | test bpd | generative classifier accuracy |\n|---|---|---|")
    for row in rows:
        accuracy = f"{row['generative_accuracy']:.4f}" if "generative_accuracy" in row else "—"
        print(f"| {row['preset']} | {row['test_bpd']:.4f} ± {row['test_bpd_stderr']:.4f} | {accuracy} |")
    path = RESULTS / "conditional_mnist.json"
    if path.is_file():  # keep the rows of the presets not run this time
        ran = {row["preset"] for row in rows}
        rows = [r for r in json.loads(path.read_text())["results"] if r["preset"] not in ran] + rows
    path = write_results(path, meta, rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
