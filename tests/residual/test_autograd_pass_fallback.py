"""``residual/autograd_pass.py`` asks a private torch function (``torch._C._will_engine_execute_node``)
which gradients the running backward pass will use. If a torch release drops it, or it refuses
the call, the fused LipSwish and the residual convolution must fall back to computing every
gradient, and stay exact: a residual block's log-det gradients (Neumann series and exact) are
compared with and without the private function."""
from __future__ import annotations

import pytest
import torch

from invflow.residual import InvertibleResidualBlock, conv_residual_net
from invflow.residual.autograd_pass import gradient_node, will_execute

PRIVATE = "_will_engine_execute_node"


def _raising(node: object) -> bool:
    raise RuntimeError("not called from inside the engine")


def _block_gradients(logdet: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    g = conv_residual_net(2, 6, coeff=0.9).double()
    block = InvertibleResidualBlock(g, (2, 4, 4), logdet=logdet, n_dist="fixed", n_exact_terms=4)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)  # the same Hutchinson probe each time
    y, ld = block(x)
    return list(torch.autograd.grad(ld.mean() + y.square().mean(), [x, *g.parameters()]))


@pytest.mark.parametrize("logdet", ["unbiased", "exact"])
@pytest.mark.parametrize("how", ["missing", "raising"])
def test_gradients_are_unchanged_without_the_private_function(
    logdet: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert hasattr(torch._C, PRIVATE), "this torch has no private function: the fallback is the only path"
    want = _block_gradients(logdet)
    if how == "missing":
        monkeypatch.delattr(torch._C, PRIVATE)
    else:
        monkeypatch.setattr(torch._C, PRIVATE, _raising)
    got = _block_gradients(logdet)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_will_execute_answers_true_when_torch_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    node = gradient_node(torch.zeros(2, requires_grad=True) * 2)
    assert will_execute(None) is False
    monkeypatch.delattr(torch._C, PRIVATE)
    assert will_execute(node) is True
    monkeypatch.setattr(torch._C, PRIVATE, _raising, raising=False)
    assert will_execute(node) is True
