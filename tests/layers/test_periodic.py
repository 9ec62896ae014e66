"""Periodic convolutions (Hoogeboom et al. 2019): circular conv2d, conjugate-symmetric log-det."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from invflow.layers.periodic import PeriodicConv, kernel_spectrum, periodic_conv, periodic_logdet


def _circular_conv2d(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    p = weight.shape[-1] // 2
    return F.conv2d(F.pad(x, (p, p, p, p), mode="circular"), weight)


@pytest.mark.parametrize("k,h,w", [(3, 6, 10), (5, 7, 5), (1, 4, 3)])
def test_matches_conv2d_with_circular_padding(k: int, h: int, w: int) -> None:
    gen = torch.Generator().manual_seed(k)
    weight = torch.randn(3, 3, k, k, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(periodic_conv(x, kernel_spectrum(weight, h, w)), _circular_conv2d(x, weight))


@pytest.mark.parametrize("h,w", [(6, 10), (5, 7), (4, 1)])
def test_half_spectrum_logdet_equals_full_spectrum_sum(h: int, w: int) -> None:
    """Σ over all h·w frequencies of log|det| from fft2 equals the rfft2 half counted with mirrors."""
    gen = torch.Generator().manual_seed(h * w)
    k = 1 if w == 1 else 3
    weight = torch.randn(4, 4, k, k, generator=gen, dtype=torch.float64)
    padded = F.pad(weight, (0, w - k, 0, h - k))
    full = torch.fft.fft2(padded).permute(2, 3, 0, 1)
    expected = torch.linalg.slogdet(full).logabsdet.sum()
    torch.testing.assert_close(periodic_logdet(kernel_spectrum(weight, h, w), w), expected)


def test_float32_inverse_and_init_near_identity() -> None:
    torch.manual_seed(0)
    layer = PeriodicConv(12, 16, 16)
    x = torch.randn(2, 12, 16, 16)
    with torch.no_grad():
        z, logdet = layer(x)
        torch.testing.assert_close(layer.inverse(z)[0], x, atol=1e-5, rtol=1e-5)
    assert 1e-3 < ((z - x).norm() / x.norm()).item() < 0.2
    assert 0 < logdet.abs().max().item() < 0.1 * 12 * 16 * 16


@pytest.mark.parametrize("args", [(3, 2, 8, 3), (3, 8, 8, 4), (0, 8, 8, 3), (3, 8, 0, 1)])
def test_bad_arguments_are_rejected(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        PeriodicConv(*args)
