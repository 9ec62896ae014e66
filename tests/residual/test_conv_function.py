"""The convolution with kernel-based double backward (``invflow.residual.conv``) against
``torch.nn.functional.conv2d`` differentiated by autograd: values, first and second derivatives
in float64 (``gradcheck``/``gradgradcheck``), both memory layouts, vmapped backward passes, and
the series' input-only products skipping the weight gradient."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import invflow.residual.conv as conv_module
from invflow.residual.conv import conv2d

CL = torch.channels_last


def _inputs(kernel: int, layout: torch.memory_format, seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
    w = (
        torch.randn(4, 3, kernel, kernel, dtype=torch.float64)
        .contiguous(memory_format=layout)
        .requires_grad_(True)
    )
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    return x, w, b


def _reference(x, w, b, padding):
    return F.conv2d(x, w, b, padding=padding)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
@pytest.mark.parametrize("kernel", [1, 3])
def test_values_first_and_second_derivatives_match_conv2d(kernel: int, layout: torch.memory_format) -> None:
    x, w, b = _inputs(kernel, layout)
    u = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    v = torch.randn_like(x)
    ww = torch.randn_like(w)

    def derivatives(f):
        y = f(x, w, b, kernel // 2)
        gx, gw, gb = torch.autograd.grad(y, (x, w, b), u, create_graph=True)
        # the Neumann surrogate's pattern, plus the weight and bias terms
        second = torch.autograd.grad(
            (gx * v).sum() + (gw * ww).sum() + gb.sum(), (x, w, b), materialize_grads=True
        )
        return (y, gx, gw, gb, *second)

    for a, c in zip(derivatives(conv2d), derivatives(_reference)):
        torch.testing.assert_close(a, c, atol=1e-12, rtol=0)


def test_gradcheck_and_gradgradcheck_float64() -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return conv2d(x, w, b, 1)

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_input_only_products_skip_the_weight_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    masks = []
    original = conv_module._conv_backward

    def spy(grad, x, weight, padding, mask, bias, **options):
        masks.append(list(mask))
        return original(grad, x, weight, padding, mask, bias, **options)

    monkeypatch.setattr(conv_module, "_conv_backward", spy)
    x, w, b = _inputs(3, CL)
    y = conv2d(x, w, b, 1)
    u = torch.randn_like(y)
    gx = torch.autograd.grad(y, x, u, retain_graph=True)[0]
    assert masks == [[True, False, False]]
    torch.testing.assert_close(gx, torch.autograd.grad(_reference(x, w, b, 1), x, u)[0], atol=1e-12, rtol=0)
    torch.autograd.grad(y, (x, w, b), u)
    assert masks[-1] == [True, True, True]


def test_vmapped_backward_matches_rows_of_the_jacobian() -> None:
    """``is_grads_batched`` (the exact log-det's Jacobian rows) goes through autograd's own formula."""
    x, w, b = _inputs(3, torch.contiguous_format, seed=2)
    y = conv2d(x, w, b, 1)
    probes = torch.randn(3, *y.shape, dtype=torch.float64)
    got = torch.autograd.grad(y, x, probes, is_grads_batched=True, create_graph=True)[0]
    want = torch.stack([torch.autograd.grad(_reference(x, w, b, 1), x, p)[0] for p in probes])
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
