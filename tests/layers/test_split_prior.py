"""The factor-out prior's ``log σ`` head: weights scaled by ``1/fan_in`` (layers/split.py), checked
against the documented formula, its pace under Adam, and the exact loading of older checkpoints.

The learning measurement behind it (paired 600-step MNIST runs against normflows) lives in
``benchmarks/vs_reference.py --learning``; these tests pin the parametrisation, not timings.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import invflow
from invflow.core.flow import Flatten, SequentialFlow
from invflow.layers.actnorm import ActNorm
from invflow.layers.split import FactorOut

SHAPE = (4, 6, 5)  # kept 2 channels, factored 2


def factor_out(seed: int = 0) -> FactorOut:
    torch.manual_seed(seed)
    layer = FactorOut(SHAPE, SequentialFlow(ActNorm(2), Flatten((2, 6, 5)))).double()
    with torch.no_grad():
        layer.prior_net.weight.normal_(0.0, 0.3)
        layer.prior_net.bias.normal_(0.0, 0.3)
    return layer.eval()


def documented_log_prob_of_x2(layer: FactorOut, x: torch.Tensor) -> torch.Tensor:
    """``log N(x_2; μ, σ²)`` summed per sample, with ``μ = W_μ * x_1 + b_μ`` and
    ``log σ = (W_σ * x_1) / (9·C_1) + b_σ``: the formula of layers/split.py, written out."""
    x1, x2 = x[:, :2], x[:, 2:]
    w, b = layer.prior_net.weight, layer.prior_net.bias
    mean = F.conv2d(x1, w[0::2], b[0::2], padding=1)
    log_std = F.conv2d(x1, w[1::2], None, padding=1) / (9 * 2) + b[1::2].view(1, -1, 1, 1)
    eps = (x2 - mean) / log_std.exp()
    return (-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)).sum((1, 2, 3))


def test_log_std_weights_are_divided_by_fan_in() -> None:
    layer = factor_out()
    assert float(layer.log_std_fan_in) == 9 * 2
    w = layer.prior_weight()
    torch.testing.assert_close(w[0::2], layer.prior_net.weight[0::2], atol=0, rtol=0)
    torch.testing.assert_close(w[1::2], layer.prior_net.weight[1::2] / 18, atol=0, rtol=0)


def test_log_prob_of_the_factored_half_follows_the_documented_formula() -> None:
    layer = factor_out()
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z, logdet = layer(x)
    eps = z[:, : 2 * 6 * 5]
    # log N(ε; 0, I) + log|det ∂ε/∂x_2| is the Gaussian log-density of x_2; the inner ActNorm is the
    # identity in eval mode before initialisation, so its log-det is 0.
    ours = -0.5 * (eps**2).sum(1) - 0.5 * eps.shape[1] * math.log(2 * math.pi) + logdet
    torch.testing.assert_close(ours, documented_log_prob_of_x2(layer, x), atol=1e-10, rtol=0)


def test_log_std_moves_at_the_pace_of_one_parameter_under_adam() -> None:
    # The cause measured on MNIST: on a background patch (every tap the same value a) the summed head
    # fell by lr·9·C_1·|a| per Adam step. Divided by fan_in, one step moves log σ by at most lr·(|a| + 1).
    layer = factor_out()
    with torch.no_grad():
        layer.prior_net.weight.zero_()
        layer.prior_net.bias.zero_()
    a, lr = -3.6, 1e-3
    x = torch.full((8, *SHAPE), a, dtype=torch.float64)
    noise = torch.randn(8, 2, 6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x[:, 2:] = a + 0.01 * noise
    opt = torch.optim.Adam(layer.prior_net.parameters(), lr=lr)
    before = layer._mean_log_std(x[:, :2])[1][:, :, 2:4, 2:3]  # interior pixels: all nine taps see a
    z, logdet = layer(x)
    loss = (0.5 * (z**2).sum(1) - logdet).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = layer._mean_log_std(x[:, :2])[1][:, :, 2:4, 2:3]
    step = (after - before).abs().max().item()
    assert step <= lr * (abs(a) + 1) * 1.001
    assert step >= lr * abs(a)  # it does learn: the weights moved coherently, ≈ lr·|a| + lr
    # the summed head (divisor 1, as before the change) would have moved 18 times further
    assert lr * (9 * 2 * abs(a) + 1) > 10 * step


def test_checkpoint_without_the_divisor_loads_exactly_the_summed_head() -> None:
    old = factor_out()
    state = {k: v for k, v in old.state_dict().items() if k != "log_std_fan_in"}
    new = factor_out(seed=5)
    new.load_state_dict(state)  # strict: the missing divisor is filled in, not reported
    assert float(new.log_std_fan_in) == 1.0
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x1 = x[:, :2]
    h = F.conv2d(x1, old.prior_net.weight, old.prior_net.bias, padding=1)  # the old maths
    mean, log_std = new._mean_log_std(x1)
    torch.testing.assert_close(mean, h[:, 0::2], atol=0, rtol=0)
    torch.testing.assert_close(log_std, h[:, 1::2], atol=0, rtol=0)
    # and a current checkpoint keeps its divisor
    again = factor_out(seed=6)
    again.load_state_dict(old.state_dict())
    assert float(again.log_std_fan_in) == 18.0


def test_a_glow_state_dict_without_the_divisor_loads_strictly_and_keeps_its_function() -> None:
    # What load_model / resume see with a checkpoint written before the divisor existed.
    config = invflow.load_config("glow-mnist-tiny")
    torch.manual_seed(0)
    old = invflow.build_model(config).double()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    old.train()
    old.log_prob(x)  # ActNorm initialisation
    for m in old.modules():
        if isinstance(m, FactorOut):
            with torch.no_grad():
                m.prior_net.weight.normal_(0.0, 0.1)
            m.log_std_fan_in.fill_(1.0)  # the summed head, as such a checkpoint holds it
    state = {k: v for k, v in old.state_dict().items() if not k.endswith("log_std_fan_in")}
    assert len(state) < len(old.state_dict())
    new = invflow.build_model(config).double()
    new.load_state_dict(state)
    old.eval()
    new.eval()
    torch.testing.assert_close(new.log_prob(x), old.log_prob(x), atol=0, rtol=0)
