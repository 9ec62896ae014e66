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


def test_the_environment_says_whether_the_native_kernels_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from common import environment

    from invflow.layers import conv_conditioner_kernels as native

    assert environment("cpu")["native_kernels"] in ("on", f"unavailable ({native.failure()})")
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert environment("cpu")["native_kernels"] == "off (INVFLOW_NATIVE_KERNELS=0)"
    assert "native_kernels" not in environment("meta")  # not a CPU measurement
