"""LogitTransform refuses inputs outside [0, 1] (they would give NaN log-densities)."""
import pytest
import torch

from invflow.layers.logit import LogitTransform


@pytest.mark.parametrize("bad", [-0.01, 1.5])
def test_values_outside_unit_interval_are_refused(bad: float) -> None:
    x = torch.full((2, 1, 2, 2), 0.5)
    x[1, 0, 1, 1] = bad
    with pytest.raises(ValueError, match=r"dequantized images in \[0, 1\]"):
        LogitTransform((1, 2, 2), alpha=0.05)(x)


def test_unit_interval_edges_are_accepted() -> None:
    x = torch.tensor([0.0, 1.0, 0.5, 0.25]).reshape(1, 1, 2, 2)
    z, logdet = LogitTransform((1, 2, 2), alpha=0.05)(x)
    assert torch.isfinite(z).all() and torch.isfinite(logdet).all()
