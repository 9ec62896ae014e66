"""A 2-preset × 2-seed comparison on real MNIST writes the table (Markdown, CSV, JSON) and the plot."""
import csv
import json

import pytest
import yaml
from compare_args import PRESETS, fast_args

from invflow import run_files
from invflow.cli import main
from invflow.compare import stats
from invflow.train.metrics import read_metrics


def final_test_bpd(run_dir) -> float:
    return [r for r in read_metrics(run_dir / run_files.METRICS) if r["split"] == "test"][-1]["bpd"]


def strict_json(text: str):
    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_two_presets_two_seeds(mnist_dir, tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", *PRESETS, "--seeds", "2", *fast_args(mnist_dir, out, steps=6)]) == 0
    printed = capsys.readouterr().out

    per_seed = {}
    for preset in PRESETS:
        for seed in (0, 1):
            run = out / "runs" / preset / f"seed-{seed}"
            config = yaml.safe_load((run / run_files.CONFIG).read_text())
            assert config["train"]["seed"] == seed and config["train"]["steps"] == 6
            assert (run / run_files.LAST_PATH).is_file()
        per_seed[preset] = [final_test_bpd(out / "runs" / preset / f"seed-{k}") for k in (0, 1)]
        assert per_seed[preset][0] != per_seed[preset][1], "seeds must give different runs"

    table = (out / "summary.md").read_text()
    assert table in printed
    for preset, values in per_seed.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {preset} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:3] == ["2", "6"]
        assert cells[3] == f"{stats.mean(values):.4f} ± {stats.sample_std(values):.4f}"
        assert cells[6] == "n/a"  # glow-family evaluations have no estimator standard error

    with (out / "summary.csv").open() as f:
        rows = {r["preset"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(PRESETS)
    summary = strict_json((out / "summary.json").read_text())
    assert [r["preset"] for r in summary["presets"]] == PRESETS and len(summary["runs"]) == 4
    for preset, values in per_seed.items():
        row = next(r for r in summary["presets"] if r["preset"] == preset)
        assert float(rows[preset]["test_std"]) == pytest.approx(stats.sample_std(values))
        assert row["test_std"] == pytest.approx(stats.sample_std(values))
        assert row["params"] > 0 and row["images_per_s"] > 0 and row["sample_64_s"] > 0
        assert row["peak_step_mib"] > 0 and row["fixed_point_iterations"] is None
    assert summary["environment"]["torch"]

    png = out / "test_bpd_vs_step.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
