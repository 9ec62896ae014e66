"""The product forms of narrow convolutions (``invflow.residual.narrow_conv``) against
``torch.nn.functional.conv2d``/``unfold``/``fold`` differentiated by autograd, in float64: values,
input and weight gradients, ``gradcheck``/``gradgradcheck``, both memory layouts, the result's
layout, ``vmap``, and the cases that must keep the built-in kernel."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import invflow.residual.conv as conv_module
from invflow.residual import narrow_conv

CL = torch.channels_last
SHAPES = [(1, 6), (6, 1), (5, 3), (6, 4), (2, 2), (1, 1)]  # (C_in, C_out): narrow input, output, or both


def _operands(c_in: int, c_out: int, kernel: int = 3, layout=torch.contiguous_format, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c_in, 5, 4, dtype=torch.float64, generator=gen).contiguous(memory_format=layout)
    w = torch.randn(c_out, c_in, kernel, kernel, dtype=torch.float64, generator=gen)
    b = torch.randn(c_out, dtype=torch.float64, generator=gen)
    return x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize(("c_in", "c_out"), SHAPES)
def test_values_and_both_gradients_match_conv2d(c_in: int, c_out: int, kernel: int, layout) -> None:
    x, w, b = _operands(c_in, c_out, kernel, layout)
    padding = kernel // 2
    assert narrow_conv.narrow_side(x, w, padding) is not None
    want = F.conv2d(x, w, b, padding=padding)
    torch.testing.assert_close(narrow_conv.conv2d(x, w, b, padding), want, atol=1e-12, rtol=0)
    grad = torch.randn_like(want)
    gx, gw = torch.autograd.grad(want, (x, w), grad)
    got_gx = narrow_conv.input_gradient(grad, w, padding)
    # the adjoint has its own narrow side: None means oneDNN's kernel is kept for it
    adjoint = narrow_conv.transposed_weight(w)
    assert (got_gx is None) == (narrow_conv.narrow_side(grad, adjoint, padding) is None)
    if got_gx is not None:
        torch.testing.assert_close(got_gx, gx, atol=1e-12, rtol=0)
    for g in (grad, grad.contiguous(memory_format=CL)):
        torch.testing.assert_close(narrow_conv.weight_gradient(g, x, w, padding), gw, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("c_in", "c_out"), SHAPES)
def test_gradcheck_and_gradgradcheck_in_every_operand(c_in: int, c_out: int) -> None:
    x, w, b = _operands(c_in, c_out, seed=1)
    fn = lambda x, w, b: narrow_conv.conv2d(x, w, b, 1)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
@pytest.mark.parametrize(("c_in", "c_out"), [(1, 4), (4, 1)])
def test_the_residual_conv_function_matches_two_derivatives_on_narrow_shapes(c_in, c_out, layout) -> None:
    """``invflow.residual.conv.conv2d`` (the Function with its own double backward) on narrow shapes."""
    x, w, b = _operands(c_in, c_out, layout=layout, seed=2)
    fn = lambda x, w, b: conv_module.conv2d(x, w, b, 1, channels_last=layout == CL)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize(("c_in", "c_out"), [(1, 4), (4, 1), (3, 3)])
def test_channels_last_flag_sets_the_layout_of_the_result(c_in: int, c_out: int) -> None:
    x, w, b = _operands(c_in, c_out)
    with torch.no_grad():
        plain = narrow_conv.conv2d(x, w, b, 1)
        cl = narrow_conv.conv2d(x, w, b, 1, channels_last=True)
    assert plain.is_contiguous()
    assert cl.is_contiguous(memory_format=CL)
    torch.testing.assert_close(cl, plain, atol=1e-12, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kernel", [3, 5])
def test_shifted_im2col_and_col2im_match_unfold_and_fold_to_second_order(channels: int, kernel: int) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, channels, 4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    cols = torch.randn(2, channels * kernel**2, 20, dtype=torch.float64, generator=gen, requires_grad=True)
    torch.testing.assert_close(narrow_conv._columns(x, kernel), F.unfold(x, kernel, padding=kernel // 2))
    torch.testing.assert_close(narrow_conv._fold(cols, kernel, 4, 5),
                               F.fold(cols, (4, 5), kernel, padding=kernel // 2))
    torch.testing.assert_close(narrow_conv._shifted_copies(x, kernel),
                               F.unfold(x, kernel, padding=kernel // 2))
    torch.testing.assert_close(narrow_conv._shifted_sum(cols, kernel, 4, 5),
                               F.fold(cols, (4, 5), kernel, padding=kernel // 2))
    assert torch.autograd.gradgradcheck(lambda t: narrow_conv._columns(t, kernel), (x,))
    assert torch.autograd.gradgradcheck(lambda t: narrow_conv._fold(t, kernel, 4, 5), (cols,))


def test_vmap_over_the_products_matches_a_loop() -> None:
    """The exact log-det takes Jacobian rows with ``vmap``; the im2col Functions have vmap rules."""
    x, w, b = _operands(1, 4, seed=4)
    probes = torch.randn(3, 2, 1, 5, 4, dtype=torch.float64)
    got = torch.func.vmap(lambda p: narrow_conv.conv2d(x + p, w, b, 1))(probes)
    want = torch.stack([F.conv2d(x + p, w, b, padding=1) for p in probes])
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    y = narrow_conv.conv2d(x, w, b, 1)
    rows = torch.autograd.grad(y, x, torch.randn(3, *y.shape, dtype=torch.float64), is_grads_batched=True)[0]
    assert rows.shape == (3, *x.shape)


def test_which_side_takes_the_products() -> None:
    """The measured rule: up to 4 output channels by fold, a wide output only from 1 input channel."""
    x1, x3, x64 = (torch.randn(2, c, 5, 4) for c in (1, 3, 64))
    assert narrow_conv.narrow_side(x64, torch.randn(4, 64, 3, 3), 1) == "out"
    assert narrow_conv.narrow_side(x64, torch.randn(5, 64, 3, 3), 1) is None
    assert narrow_conv.narrow_side(x1, torch.randn(64, 1, 3, 3), 1) == "in"
    assert narrow_conv.narrow_side(x3, torch.randn(64, 3, 3, 3), 1) is None
    assert narrow_conv.narrow_side(x3, torch.randn(3, 3, 3, 3), 1) == "out"


def test_other_convolutions_keep_the_built_in_kernel() -> None:
    x, w, _ = _operands(1, 6)
    wide = torch.randn(8, 8, 3, 3, dtype=torch.float64)
    assert narrow_conv.narrow_side(torch.randn(2, 8, 5, 4, dtype=torch.float64), wide, 1) is None
    assert narrow_conv.narrow_side(x, torch.randn(6, 1, 1, 1, dtype=torch.float64), 0) is None  # 1 x 1
    assert narrow_conv.narrow_side(x, w, 0) is None  # not "same"
    assert narrow_conv.narrow_side(x, torch.randn(6, 1, 3, 1, dtype=torch.float64), 1) is None  # not square
    strided = torch.randn(2, 1, 10, 4, dtype=torch.float64)[:, :, ::2]
    assert narrow_conv.narrow_side(strided, w, 1) is None  # neither dense layout
    assert narrow_conv.input_gradient(torch.randn(2, 8, 5, 4, dtype=torch.float64), wide, 1) is None
    assert narrow_conv.weight_gradient(torch.randn(2, 8, 5, 4, dtype=torch.float64),
                                       torch.randn(2, 8, 5, 4, dtype=torch.float64), wide, 1) is None
    torch.testing.assert_close(narrow_conv.conv2d(strided, w, None, 1), F.conv2d(strided, w, padding=1))


@pytest.mark.parametrize(("c_in", "c_out", "channels_last"),
                         [(1, 6, False), (1, 6, True), (6, 1, True), (6, 2, False)])
def test_custom_operators_for_compiled_code(c_in: int, c_out: int, channels_last: bool) -> None:
    """``compiled_conv2d``'s operators: registration (``opcheck``: schema, fake kernel with the real
    strides, autograd, aot_autograd), values and two derivatives against ``F.conv2d``."""
    layout = CL if channels_last else torch.contiguous_format
    x, w, b = _operands(c_in, c_out, layout=layout, seed=5)
    torch.library.opcheck(narrow_conv._conv_op, (x.detach(), w.detach(), 1, channels_last))
    grad = torch.randn(2, c_out, 5, 4, dtype=torch.float64).contiguous(memory_format=layout)
    torch.library.opcheck(narrow_conv._weight_op, (grad, x.detach(), w.detach(), 1))
    got = narrow_conv.compiled_conv2d(x, w, b, 1, channels_last)
    torch.testing.assert_close(got, F.conv2d(x, w, b, padding=1), atol=1e-12, rtol=0)
    assert got.is_contiguous(memory_format=layout)
    fn = lambda x, w, b: narrow_conv.compiled_conv2d(x, w, b, 1, channels_last)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))
