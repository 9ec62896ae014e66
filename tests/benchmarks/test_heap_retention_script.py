"""``benchmarks/heap_retention.py`` at a tiny size: one round of fresh processes with and without
the allocator setting, both sides' steps, faults and peak memory recorded (no figure is checked:
timings stay out of tests)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from invflow.train import heap

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_one_round_records_both_sides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import heap_retention

    out = tmp_path / "heap.json"
    assert heap_retention.main(["--cases", "glow", "--rounds", "2", "--steps", "1", "--warmup", "0",
                                "--batch", "2", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["case"] == "glow" and len(row["per_round"]) == 2
    for side in ("default", "retained"):
        assert row[f"{side}_step_s"] > 0 and row[f"{side}_peak_rss_mb"] > 0
    retained = [r["retained"]["mmap_threshold"] for r in row["per_round"]]
    assert all(r["default"]["mmap_threshold"] is None for r in row["per_round"])
    assert retained == [retained[0]] * 2 and (retained[0] is None) == (heap._glibc() is None)
