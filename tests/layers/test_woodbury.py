"""Woodbury transformations (Lu & Huang 2020): maths against dense matrices, no big inverses."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

from invflow.layers import woodbury_math as wm
from invflow.layers.woodbury import (
    ChannelWoodbury,
    HeightWoodbury,
    MEWoodbury,
    SpatialWoodbury,
    WidthWoodbury,
    WoodburyMixing,
)

C, H, W = 3, 6, 10  # non-square, so a transposed height/width shows up as a wrong matrix


def _dense(u: Tensor, v: Tensor) -> Tensor:
    return torch.eye(u.shape[0], dtype=u.dtype) + u @ v


def _random_factors(n: int, d: int, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(n, d, generator=gen, dtype=torch.float64),
            0.3 * torch.randn(d, n, generator=gen, dtype=torch.float64))


def test_low_rank_maths_match_dense_matrices() -> None:
    u, v = _random_factors(7, 3, seed=0)
    x = torch.randn(2, 7, 5, dtype=torch.float64)
    xr = torch.randn(2, 5, 7, dtype=torch.float64)
    dense = _dense(u, v)
    torch.testing.assert_close(wm.woodbury_left(x, u, v), dense @ x)
    torch.testing.assert_close(wm.woodbury_right(xr, u, v), xr @ dense)
    torch.testing.assert_close(wm.woodbury_left_inverse(dense @ x, u, v), x)
    torch.testing.assert_close(wm.woodbury_right_inverse(xr @ dense, u, v), xr)
    torch.testing.assert_close(wm.sylvester_logdet(u, v), torch.linalg.slogdet(dense).logabsdet)


def _layer_matrix(layer: torch.nn.Module) -> Tensor:
    """The Jacobian of a linear layer on (C, H, W) images: column i is the image of basis vector i."""
    n = C * H * W
    basis = torch.eye(n, dtype=torch.float64).reshape(n, C, H, W)
    return layer(basis)[0].reshape(n, n).T


def _kron_matrix(layer: torch.nn.Module) -> Tensor:
    """The same matrix built from U, V by Kronecker products, for (c, h, w) row-major flattening."""
    if not hasattr(layer, "U"):  # SequentialFlow: the product of its parts, applied in order
        total = torch.eye(C * H * W, dtype=torch.float64)
        for sub in layer:
            total = _kron_matrix(sub) @ total
        return total
    i_c, i_h, i_w = (torch.eye(s, dtype=torch.float64) for s in (C, H, W))
    mat = _dense(layer.U, layer.V).detach()
    mat_t = mat.T.contiguous()  # torch.kron rejects some non-contiguous inputs
    if isinstance(layer, ChannelWoodbury):  # (I + UV) x on (c, hw)
        return torch.kron(mat, torch.kron(i_h, i_w))
    if isinstance(layer, SpatialWoodbury):  # x (I + UV) on (c, hw)
        return torch.kron(i_c, mat_t)
    if isinstance(layer, WidthWoodbury):  # x (I + UV) on (ch, w)
        return torch.kron(i_c, torch.kron(i_h, mat_t))
    assert isinstance(layer, HeightWoodbury)  # x (I + UV) on (cw, h)
    return torch.kron(i_c, torch.kron(mat_t, i_w))


LAYERS = {
    "channel": lambda: ChannelWoodbury(C, H, W, latent_dim=2),
    "spatial": lambda: SpatialWoodbury(C, H, W, latent_dim=5),
    "width": lambda: WidthWoodbury(C, H, W, latent_dim=3),
    "height": lambda: HeightWoodbury(C, H, W, latent_dim=2),
    "woodbury-glow": lambda: WoodburyMixing(C, H, W, latent_channel=2, latent_spatial=4),
    "me-woodbury": lambda: MEWoodbury(C, H, W, latent_channel=2, latent_height=3, latent_width=4),
}


@pytest.mark.parametrize("name", LAYERS)
def test_logdet_matches_slogdet_of_dense_matrix(name: str) -> None:
    torch.manual_seed(0)
    layer = LAYERS[name]().double()
    with torch.no_grad():
        for p in layer.parameters():  # far from identity, so the check is not trivial
            p.normal_(0.0, 0.3)
        dense = _kron_matrix(layer)
        torch.testing.assert_close(_layer_matrix(layer), dense)
        _, logdet = layer(torch.randn(2, C, H, W, dtype=torch.float64))
    expected = torch.linalg.slogdet(dense).logabsdet
    torch.testing.assert_close(logdet, expected.expand(2), atol=1e-9, rtol=1e-12)


@pytest.mark.parametrize("name", ["woodbury-glow", "me-woodbury"])
def test_no_matrix_larger_than_latent_dim_is_factorised(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every torch.linalg factorisation sees only d x d matrices (Woodbury + Sylvester identities)."""
    layer = LAYERS[name]().double()
    max_latent = max(p.shape[1] for n, p in layer.named_parameters() if n.endswith("U"))
    sizes: list[int] = []
    names = ["solve", "solve_ex", "inv", "inv_ex", "lu_factor", "lu_factor_ex", "cholesky", "cholesky_ex",
             "solve_triangular", "lstsq", "pinv", "slogdet", "det", "eig", "svd"]
    for fn_name in names:
        original = getattr(torch.linalg, fn_name)

        def recording(a: Tensor, *args, _original=original, **kwargs):
            sizes.append(max(a.shape[-2:]))
            return _original(a, *args, **kwargs)

        monkeypatch.setattr(torch.linalg, fn_name, recording)
    x = torch.randn(2, C, H, W, dtype=torch.float64)
    z, _ = layer(x)
    torch.testing.assert_close(layer.inverse(z)[0], x)
    assert sizes, "expected the capacitance matrices to be factorised"
    assert max(sizes) <= max_latent < min(C * H * W, H * W)


def test_init_is_near_but_not_at_identity() -> None:
    torch.manual_seed(0)
    layer = MEWoodbury(12, 16, 16, latent_channel=8, latent_height=8, latent_width=8)
    x = torch.randn(4, 12, 16, 16)
    z, logdet = layer(x)
    rel = ((z - x).norm() / x.norm()).item()
    assert 1e-4 < rel < 0.1
    assert 0 < logdet.abs().max().item() < 0.1 * 12 * 16 * 16
    for sub in layer:
        gap = (_dense(sub.U, sub.V) - torch.eye(sub.U.shape[0])).detach()
        assert torch.linalg.matrix_norm(gap, ord=2) < 0.1


def test_gradients_reach_both_factors() -> None:
    layer = WoodburyMixing(4, 4, 6, latent_channel=2, latent_spatial=3)
    z, logdet = layer(torch.randn(3, 4, 4, 6))
    (z.square().sum() - logdet.sum()).backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_wrong_height_error_names_expected_and_got() -> None:
    layer = SpatialWoodbury(C, H, W, latent_dim=2)
    with pytest.raises(ValueError, match=r"\(B, 3, 6, 10\).*\(1, 3, 10, 6\)"):
        layer(torch.zeros(1, C, W, H))


@pytest.mark.parametrize("latent", [0, -1, 2.0])
def test_bad_latent_dim_is_rejected(latent) -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        ChannelWoodbury(C, H, W, latent_dim=latent)
