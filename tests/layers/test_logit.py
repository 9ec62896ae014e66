"""LogitTransform refuses inputs outside [0, 1] (they would give NaN log-densities)."""
import pytest
import torch

from invflow.layers.logit import LogitTransform


@pytest.mark.parametrize("bad", [-0.06, 1.5])
def test_values_outside_the_transforms_domain_are_refused(bad: float) -> None:
    x = torch.full((2, 1, 2, 2), 0.5)
    x[1, 0, 1, 1] = bad
    with pytest.raises(ValueError, match=r"dequantized images in \[0, 1\] \(the transform's domain is "
                       r"\[-0.05556, 1.056\]\)"):
        LogitTransform((1, 2, 2), alpha=0.05)(x)


def test_its_own_inverses_outside_the_unit_interval_are_accepted() -> None:
    """The inverse reaches −α/(1−2α) below 0 (and as far above 1): a model's raw samples."""
    layer = LogitTransform((1, 2, 2), alpha=0.05)
    x, _ = layer.inverse(torch.tensor([-10.0, 10.0, 0.0, 1.0]).reshape(1, 1, 2, 2))
    assert float(x.min()) < 0 and float(x.max()) > 1
    z, logdet = layer(x)
    assert torch.isfinite(z).all() and torch.isfinite(logdet).all()


def test_unit_interval_edges_are_accepted() -> None:
    x = torch.tensor([0.0, 1.0, 0.5, 0.25]).reshape(1, 1, 2, 2)
    z, logdet = LogitTransform((1, 2, 2), alpha=0.05)(x)
    assert torch.isfinite(z).all() and torch.isfinite(logdet).all()
