"""The invertible residual block: fixed-point inverse, input validation, eval semantics,
checkpoints, LipSwish and norm-order parsing."""
from __future__ import annotations

import math

import pytest
import torch

from invflow.core.hooks import refresh_weight_derived_state
from invflow.residual import (
    InvertibleResidualBlock,
    LipSwish,
    SpectralNormLinear,
    conv_residual_net,
    fixed_point_inverse,
    parse_norm_orders,
)


def conv_block(**kwargs: object) -> InvertibleResidualBlock:
    torch.manual_seed(0)
    return InvertibleResidualBlock(conv_residual_net(2, 8, coeff=0.98), (2, 4, 4), **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverse_of_forward_conv_block(dtype: torch.dtype) -> None:
    block = conv_block().to(dtype)
    with torch.no_grad():
        for m in block.g.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(10.0)  # every conv at its bound 0.98
    x = torch.randn(3, 2, 4, 4, dtype=dtype)
    block.train()(x)
    block.eval()
    with torch.no_grad():
        z, _ = block(x)
        x_rec, _ = block.inverse(z)
    torch.testing.assert_close(x_rec, x, atol=1e-6, rtol=0)
    assert 1 < block.last_inverse_iterations < block.inverse_max_iter


def test_inverse_of_forward_with_lipschitz_exactly_098() -> None:
    """g linear with ||W||_2 = 0.98: the slowest contraction a 0.98 block can have."""
    torch.manual_seed(1)
    g = SpectralNormLinear(3, 3, coeff=0.98).double()
    with torch.no_grad():
        g.weight.copy_(-5.0 * torch.eye(3, dtype=torch.float64))  # eigenvalue -0.98 after normalising
    block = InvertibleResidualBlock(g, (3,), logdet="exact", inverse_atol=1e-10, inverse_max_iter=5000)
    x = torch.randn(4, 3, dtype=torch.float64)
    block(x)
    assert float(torch.linalg.matrix_norm(g.normalized_weight(x).detach(), ord=2)) == pytest.approx(
        0.98, abs=1e-6
    )
    with torch.no_grad():
        x_rec, _ = block.eval().inverse(block(x)[0])
    torch.testing.assert_close(x_rec, x, atol=1e-6, rtol=0)


def test_non_convergence_warns_with_the_residual() -> None:
    block = conv_block(inverse_max_iter=2)
    z = torch.randn(2, 2, 4, 4)
    with pytest.warns(RuntimeWarning, match=r"did not converge in 2 iterations: max residual"):
        block.eval().inverse(z)
    with pytest.warns(RuntimeWarning, match="residual"):
        fixed_point_inverse(lambda v: 0.99 * v, torch.ones(1, 2), max_iter=3)


def test_bad_inputs_name_expected_and_got() -> None:
    block = conv_block()
    with pytest.raises(ValueError, match=r"expected shape \(B, 2, 4, 4\), got \(1, 3, 4, 4\)"):
        block(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="rank"):
        block.inverse(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="logdet"):
        InvertibleResidualBlock(torch.nn.Identity(), (2,), logdet="approximate")
    with pytest.raises(ValueError, match="n_dist"):
        InvertibleResidualBlock(torch.nn.Identity(), (2,), n_dist="uniform")


def test_training_step_then_power_iteration_refresh_and_checkpoint_roundtrip() -> None:
    block = conv_block(gradient="neumann")
    opt = torch.optim.Adam(block.parameters(), lr=1e-2)
    x = torch.randn(4, 2, 4, 4)
    for _ in range(2):
        z, logdet = block.train()(x)
        loss = (0.5 * z.pow(2).sum(dim=(1, 2, 3)) - logdet).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        refresh_weight_derived_state(block)
    assert torch.isfinite(loss)
    state = block.state_dict()
    assert any(k.endswith(".u") for k in state)
    fresh = InvertibleResidualBlock(conv_residual_net(2, 8, coeff=0.98), (2, 4, 4), logdet="exact")
    fresh.load_state_dict(state)
    block.logdet = "exact"
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), block.eval()(x))


def test_eval_forward_leaves_buffers_unchanged() -> None:
    block = conv_block()
    x = torch.randn(2, 2, 4, 4)
    block.train()(x)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1)
    before = {k: v.clone() for k, v in block.state_dict().items()}
    with torch.no_grad():
        block.eval()(x)
    for k, v in block.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_lipswish_is_one_lipschitz_for_any_beta() -> None:
    x = torch.linspace(-20, 20, 4001, dtype=torch.float64, requires_grad=True)
    for beta in (0.1, 1.0, 5.0, 50.0):
        act = LipSwish(beta).double()
        assert float(act.beta.detach()) == pytest.approx(beta)
        (slope,) = torch.autograd.grad(act(x).sum(), x)
        assert float(slope.abs().max()) <= 1.0
        assert float(slope.abs().max()) > 0.99


def test_parse_norm_orders() -> None:
    assert parse_norm_orders("2222", 3) == [2.0] * 4
    assert parse_norm_orders("f", 2) == [math.inf] * 3
    assert parse_norm_orders(None, 1) == [2.0, 2.0]
    with pytest.raises(ValueError, match="input order"):
        parse_norm_orders("2333", 3)
    with pytest.raises(ValueError, match="expected 1 or 4"):
        parse_norm_orders("22", 3)
    with pytest.raises(ValueError, match="digits"):
        parse_norm_orders("2x22", 3)
