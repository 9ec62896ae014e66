"""``benchmarks/common.py``'s paired figure: the median of per-round ratios and their range."""
from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_ratio_summary_is_the_median_of_per_round_ratios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from common import ratio_summary

    # per-round ratios 4, 1, 1: their median 1, not the ratio of the medians (3 / 2)
    fast, slow = [1.0, 2.0, 3.0], [4.0, 2.0, 3.0]
    assert ratio_summary(fast, slow) == {"speedup": 1.0, "ratio_min": 1.0, "ratio_max": 4.0}
