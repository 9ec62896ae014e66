"""Emerging convolutions (Hoogeboom et al. 2019): masks, triangular Jacobians, exact inverse."""
from __future__ import annotations

import pytest
import torch

from invflow.layers.emerging import (
    EmergingConv,
    autoregressive_mask,
    causal_conv,
    causal_conv_inverse,
    flip_kernel,
)


def _causal_kernel(c: int, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    weight = (
        0.3 * torch.randn(c, c, k, k, generator=gen, dtype=torch.float64) * autoregressive_mask(c, k).double()
    )
    diag = 0.5 + torch.rand(c, generator=gen, dtype=torch.float64)
    weight[:, :, k // 2, k // 2] += torch.diag(diag)
    return weight


def _jacobian(fn, shape: tuple[int, int, int]) -> torch.Tensor:
    """Jacobian in (pixel, channel) raster order: row/column index (i * W + j) * C + c."""
    x = torch.zeros(1, *shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: fn(v), x).reshape(*shape, *shape)
    c, h, w = shape
    return jac.permute(1, 2, 0, 4, 5, 3).reshape(c * h * w, c * h * w)


def test_mask_sees_only_earlier_pixels_and_lower_channels() -> None:
    mask = autoregressive_mask(3, 3)
    assert mask[:, :, 0].all() and mask[:, :, 1, 0].all()
    assert not mask[:, :, 1, 2].any() and not mask[:, :, 2].any()
    assert torch.equal(mask[:, :, 1, 1], torch.tril(torch.ones(3, 3), diagonal=-1))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_causal_conv_jacobian_is_triangular_with_centre_diagonal(k: int) -> None:
    shape = (3, 4, 5)
    weight = _causal_kernel(3, k, seed=k)
    jac = _jacobian(lambda v: causal_conv(v, weight), shape)
    torch.testing.assert_close(jac, torch.tril(jac))
    torch.testing.assert_close(jac.diagonal(), weight[:, :, k // 2, k // 2].diagonal().repeat(4 * 5))
    # The flipped kernel is anti-causal: upper-triangular in the same order.
    jac2 = _jacobian(lambda v: causal_conv(v, flip_kernel(weight)), shape)
    torch.testing.assert_close(jac2, torch.triu(jac2))


def test_flip_kernel_is_conv_of_flipped_input() -> None:
    weight = _causal_kernel(4, 3, seed=1)
    x = torch.randn(2, 4, 6, 10, dtype=torch.float64)
    flip = (1, 2, 3)
    torch.testing.assert_close(
        causal_conv(x, flip_kernel(weight)), causal_conv(x.flip(flip), weight).flip(flip)
    )


@pytest.mark.parametrize("k", [1, 3, 5])
def test_causal_conv_inverse_is_exact(k: int) -> None:
    weight = _causal_kernel(5, k, seed=2)
    x = torch.randn(3, 5, 6, 10, dtype=torch.float64)
    torch.testing.assert_close(causal_conv_inverse(causal_conv(x, weight), weight), x, atol=1e-9, rtol=0)


def test_emerging_float32_inverse_at_benchmark_size() -> None:
    torch.manual_seed(0)
    layer = EmergingConv(12)
    x = torch.randn(2, 12, 16, 16)
    with torch.no_grad():
        z, _ = layer(x)
        torch.testing.assert_close(layer.inverse(z)[0], x, atol=1e-5, rtol=1e-5)


def test_logdet_is_hw_times_log_diagonals() -> None:
    layer = EmergingConv(4).double()
    with torch.no_grad():
        layer.log_diag1.normal_()
        layer.log_diag2.normal_()
    _, logdet = layer(torch.randn(2, 4, 6, 10, dtype=torch.float64))
    expected = 60 * (layer.log_diag1.sum() + layer.log_diag2.sum())
    torch.testing.assert_close(logdet, expected.expand(2).detach())


def test_init_is_near_but_not_at_identity() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 12, 8, 8)
    z, logdet = EmergingConv(12)(x)
    assert 1e-3 < ((z - x).norm() / x.norm()).item() < 0.2
    assert torch.equal(logdet, torch.zeros(2))


@pytest.mark.parametrize(
    "kwargs", [{"channels": 0}, {"channels": 3, "kernel_size": 2}, {"channels": 3, "kernel_size": 0}]
)
def test_bad_arguments_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        EmergingConv(**kwargs)


@pytest.mark.parametrize("k", [1, 3])
def test_causal_conv_inverse_is_differentiable(k: int) -> None:
    # rsample differentiates through the inverse: autograd's gradient against finite differences,
    # with respect to the latents and the kernel.
    weight = _causal_kernel(2, k, seed=4).requires_grad_(True)
    y = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(causal_conv_inverse, (y, weight))
