"""The generic layer checks, run on every case of the shared registry (tests/harness.py)."""
from __future__ import annotations

import pytest
import torch

from harness import LayerCase, all_cases, jacobian_logdet

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_inverse_of_forward_is_identity(case: LayerCase) -> None:
    layer = case.build()
    x = case.inputs()
    with torch.no_grad():
        z, _ = layer(x)
        x_rec, _ = layer.inverse(z)
    assert x_rec.shape == x.shape
    torch.testing.assert_close(x_rec, x, atol=case.inverse_atol, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_inverse_logdet_is_minus_forward_logdet_at_the_inverse_point(case: LayerCase) -> None:
    # log|det ∂x/∂z| at z = -log|det ∂z/∂x| at x = f^{-1}(z), on latents the layer maps data to.
    layer = case.build()
    with torch.no_grad():
        z, _ = layer(case.inputs())
        x, inverse_logdet = layer.inverse(z)
        _, forward_logdet = layer(x)
        x_only = layer.inverse_without_logdet(z)
    assert inverse_logdet.shape == (z.shape[0],)
    assert inverse_logdet.dtype == torch.float64
    torch.testing.assert_close(inverse_logdet, -forward_logdet, atol=case.logdet_atol, rtol=0)
    torch.testing.assert_close(x_only, x, atol=0, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_logdet_matches_autograd_jacobian(case: LayerCase) -> None:
    layer = case.build()
    x = case.inputs()
    _, logdet = layer(x)
    assert logdet.shape == (x.shape[0],)
    assert logdet.dtype == torch.float64
    expected = jacobian_logdet(lambda v: layer(v)[0], x)
    torch.testing.assert_close(logdet.detach(), expected, atol=case.logdet_atol, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_samples_are_independent(case: LayerCase) -> None:
    layer = case.build()
    x = case.inputs()
    with torch.no_grad():
        z, logdet = layer(x)
        for i in range(x.shape[0]):
            zi, ldi = layer(x[i : i + 1])
            torch.testing.assert_close(zi[0], z[i], atol=1e-10, rtol=1e-10)
            torch.testing.assert_close(ldi[0], logdet[i], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_shapes_raise_value_error(case: LayerCase) -> None:
    layer = case.build()
    for shape in case.wrong_shapes():
        x = torch.zeros(2, *shape, dtype=torch.float64) + 0.5
        with pytest.raises(ValueError):
            layer(x)
