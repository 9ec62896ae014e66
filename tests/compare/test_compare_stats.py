"""Error-bar arithmetic of a comparison, checked on known per-seed values."""
import math

import pytest

from invflow.compare import stats
from invflow.compare.report import add_differences, preset_row


def test_mean_std_and_standard_error_from_known_values() -> None:
    values = [3.0, 3.2, 3.4]
    assert stats.mean(values) == pytest.approx(3.2)
    # Σ(v − 3.2)² = 0.08, divided by n − 1 = 2 → 0.04
    assert stats.sample_std(values) == pytest.approx(0.2)
    assert stats.standard_error_of_mean(values) == pytest.approx(0.2 / math.sqrt(3))


def test_one_seed_has_no_spread() -> None:
    assert stats.mean([3.1]) == 3.1
    assert math.isnan(stats.sample_std([3.1])) and math.isnan(stats.standard_error_of_mean([3.1]))
    assert math.isnan(stats.mean([]))


def test_combined_standard_error_of_a_mean() -> None:
    # sqrt(0.03² + 0.04²) / 2 = 0.05 / 2
    assert stats.combined_standard_error([0.03, 0.04]) == pytest.approx(0.025)
    assert stats.combined_standard_error([0.03, None]) is None
    assert stats.combined_standard_error([]) is None


def test_difference_and_its_standard_error() -> None:
    delta, se = stats.difference([3.0, 3.2, 3.4], [3.1, 3.3])
    assert delta == pytest.approx(3.2 - 3.2)
    sem_b = stats.sample_std([3.1, 3.3]) / math.sqrt(2)
    assert se == pytest.approx(math.hypot(0.2 / math.sqrt(3), sem_b))
    assert math.isnan(stats.difference([3.0], [3.1, 3.3])[1])


def marker(seed: int, test: float, stderr: float | None = 0.01) -> dict:
    return {"preset": "p", "seed": seed, "step": 10, "test": test, "test_stderr": stderr,
            "estimator_stderr": None, "params": 5, "images_per_s": 100.0 + seed, "sample_64_s": 0.5,
            "fixed_point_iterations": None, "peak_step_bytes": 2**20 * (1 + seed)}


def test_preset_row_takes_the_std_column_from_the_seeds() -> None:
    rows = [preset_row("a", [marker(0, 3.0), marker(1, 3.2), marker(2, 3.4)]),
            preset_row("b", [marker(0, 3.5), marker(1, 3.7)])]
    add_differences(rows)
    a, b = rows
    assert a["test_mean"] == pytest.approx(3.2) and a["test_std"] == pytest.approx(0.2)
    assert b["test_std"] == pytest.approx(stats.sample_std([3.5, 3.7]))
    assert a["eval_stderr"] == pytest.approx(math.sqrt(3 * 0.01**2) / 3)
    assert a["estimator_stderr"] is None and a["fixed_point_iterations"] is None
    assert a["images_per_s"] == pytest.approx(101.0) and a["peak_step_mib"] == pytest.approx(3.0)
    assert a["delta_se"] is None and b["delta_vs_best"] == pytest.approx(0.4)
