"""MaCow masked convolutional couplings (Ma et al. 2019): causal structure, exact inverse, log-det."""
from __future__ import annotations

import pytest
import torch

from invflow.layers.coupling import bounded_log_scale
from invflow.layers.macow import DIRECTIONS, MaCowUnit, MaskedConvCoupling


def randomized(layer: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Float64 copy with every parameter (zero-initialised output convs included) made random."""
    gen = torch.Generator().manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return layer


def allowed_dependencies(direction: str, h: int, w: int, k_h: int, k_w: int) -> torch.Tensor:
    """(h*w, h*w) mask: output pixel p may depend on input pixel q (itself, or its causal window)."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    # Distance "back" along the direction of conditioning, and offset across it.
    along = {"down": rows, "up": -rows, "right": cols, "left": -cols}[direction].reshape(-1)
    across = (cols if direction in ("down", "up") else rows).reshape(-1)
    back = along[:, None] - along[None, :]
    offset = across[None, :] - across[:, None]
    left = (k_w - 1) // 2
    window = (back >= 1) & (back <= k_h) & (offset >= -left) & (offset <= k_w - 1 - left)
    return window | torch.eye(h * w, dtype=torch.bool)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("kernel_size", [(2, 3), (1, 2)])
def test_each_pixel_depends_only_on_its_causal_window(direction: str, kernel_size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    c, h, w = 2, 6, 10
    layer = randomized(MaskedConvCoupling(c, hidden=6, kernel_size=kernel_size, direction=direction))
    x = torch.randn(1, c, h, w, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v)[0], x).reshape(c, h * w, c, h * w)
    dependence = jac.abs().sum(dim=(0, 2)) > 0  # any channel to any channel, per pixel pair
    allowed = allowed_dependencies(direction, h, w, *kernel_size)
    assert not torch.any(dependence & ~allowed), "an output depends on a pixel outside its causal window"
    assert torch.all(dependence[allowed]), "the conditioner ignores part of its window"
    # Within one pixel the Jacobian is diagonal across channels: the transform is elementwise affine.
    same_pixel = jac.diagonal(dim1=1, dim2=3)  # (c, c, h*w)
    off_diagonal = same_pixel * (1 - torch.eye(c, dtype=torch.float64))[:, :, None]
    assert torch.all(off_diagonal == 0)


@pytest.mark.parametrize("shape", [(3, 6, 10), (5, 7, 3), (2, 1, 4), (1, 1, 1)])
def test_unit_inverse_is_exact(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(1)
    layer = randomized(MaCowUnit(shape[0], hidden=8), seed=1)
    x = torch.randn(4, *shape, dtype=torch.float64)
    with torch.no_grad():
        z, _ = layer(x)
        torch.testing.assert_close(layer.inverse(z)[0], x, atol=1e-9, rtol=0)


def test_unit_logdet_is_the_sum_of_four_log_scales() -> None:
    torch.manual_seed(2)
    layer = randomized(MaCowUnit(3, hidden=8), seed=2)
    assert [f.direction for f in layer.flows] == list(DIRECTIONS)
    x = torch.randn(2, 3, 6, 10, dtype=torch.float64)
    z, logdet = layer(x)
    total, h = torch.zeros(2, dtype=torch.float64), x
    for coupling in layer.flows:
        h, ld = coupling(h)
        total = total + ld
    torch.testing.assert_close(z, h)
    torch.testing.assert_close(logdet, total)


def test_zero_init_is_a_constant_scaling() -> None:
    layer = MaskedConvCoupling(3, hidden=8).double()
    x = torch.randn(2, 3, 6, 10, dtype=torch.float64)
    z, logdet = layer(x)
    scale = bounded_log_scale(torch.tensor(0.0, dtype=torch.float64)).exp()  # ≈ sigmoid(2), Glow's init
    torch.testing.assert_close(z, x * scale)
    torch.testing.assert_close(logdet, torch.full((2,), 180 * scale.log().item(), dtype=torch.float64))


def test_inverse_is_differentiable_and_float32_works() -> None:
    torch.manual_seed(3)
    layer = MaCowUnit(2, hidden=6)
    with torch.no_grad():
        for coupling in layer.flows:
            coupling.head[-1].weight.normal_(0.0, 0.1)
    z = torch.randn(2, 2, 6, 10, requires_grad=True)
    x, _ = layer.inverse(z)
    x.square().sum().backward()
    assert z.grad is not None and torch.all(torch.isfinite(z.grad))
    with torch.no_grad():
        torch.testing.assert_close(layer(x)[0], z, atol=1e-5, rtol=0)


def test_bad_inputs_and_arguments_raise_value_error() -> None:
    layer = MaCowUnit(3, hidden=4)
    with pytest.raises(ValueError, match=r"expected shape \(B, 3, \*, \*\), got \(2, 4, 6, 10\)"):
        layer(torch.zeros(2, 4, 6, 10))
    with pytest.raises(ValueError, match="rank 3"):
        layer.inverse(torch.zeros(2, 3, 6))
    with pytest.raises(ValueError, match="direction"):
        MaskedConvCoupling(3, hidden=4, direction="diagonal")
    with pytest.raises(ValueError, match="kernel_size"):
        MaskedConvCoupling(3, hidden=4, kernel_size=(0, 3))
