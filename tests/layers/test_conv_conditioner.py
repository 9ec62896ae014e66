"""The GEMM form of Glow's conditioner (im2col / 1x1 as a product / col2im with flipped taps), and its
float32 training Function (fused products, written-out backward), are the same function of the same
parameters as the plain convolutions: values, first and second derivatives. The Function's tests run
with both of its implementations: the Python one and the native CPU kernels
(``conv_conditioner_kernels``)."""
import shutil

import pytest
import torch
from torch import nn

from invflow.layers import conv_conditioner, conv_conditioner_kernels
from invflow.layers.conv_conditioner import ConvConditioner, _GemmConditioner, fused_linear_relu_available


def native_kernels_or_skip():
    """The built kernels; a skip only where this machine has no C++ compiler, a failure where one is
    present but the build fails."""
    kernels = conv_conditioner_kernels.kernels()
    if kernels is None and shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler to build the native kernels")
    assert kernels is not None, f"the native kernels did not build: {conv_conditioner_kernels.failure()}"
    return kernels


@pytest.fixture(params=["python", "native"])
def implementation(request, monkeypatch):
    """Runs a test of the Function once with the Python implementation, once with the native kernels."""
    if request.param == "python":
        monkeypatch.setattr(conv_conditioner, "native_kernels", lambda: None)
    else:
        native_kernels_or_skip()
    return request.param


def conditioner(c_in: int, c_out: int, hidden: int, seed: int = 0) -> ConvConditioner:
    torch.manual_seed(seed)
    net = ConvConditioner(c_in, c_out, hidden).double()
    with torch.no_grad():
        for p in net.parameters():  # the last conv starts at zero: give every tap a distinct value
            p.copy_(torch.randn_like(p) * 0.3)
    return net


def as_convolutions(net: ConvConditioner, x: torch.Tensor) -> torch.Tensor:
    return nn.Sequential.forward(net, x)


@pytest.mark.parametrize("c_in,c_out,hidden,height,width", [
    (2, 4, 16, 14, 14), (1, 2, 8, 5, 7), (3, 6, 5, 1, 1), (4, 8, 12, 2, 3), (5, 3, 7, 6, 4)])
def test_values_and_gradients_equal_the_convolutions(c_in, c_out, hidden, height, width):
    net = conditioner(c_in, c_out, hidden)
    gen = torch.Generator().manual_seed(1)
    # a channel slice, as a coupling passes it: not contiguous
    x = torch.randn(3, c_in + 1, height, width, generator=gen, dtype=torch.float64)[:, 1:].requires_grad_()
    fast, plain = net(x), as_convolutions(net, x)
    assert fast.shape == plain.shape == (3, c_out, height, width)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-12)
    v = torch.randn(plain.shape, generator=gen, dtype=torch.float64)
    inputs = (x, *net.parameters())
    for g_fast, g_plain in zip(torch.autograd.grad(fast, inputs, v), torch.autograd.grad(plain, inputs, v)):
        torch.testing.assert_close(g_fast, g_plain, rtol=0, atol=1e-11)


def test_second_derivatives():
    net = conditioner(2, 4, 6)
    x = torch.randn(2, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    weights = tuple(net.parameters())

    def fn(x, *params):
        return torch.func.functional_call(
            net, dict(zip([n for n, _ in net.named_parameters()], params)), (x,)
        )

    assert torch.autograd.gradcheck(fn, (x, *weights))
    assert torch.autograd.gradgradcheck(fn, (x, *weights))


def test_state_dict_keys_are_the_sequential_ones():
    assert list(ConvConditioner(2, 4, 8).state_dict()) == [
        "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]


@pytest.mark.parametrize("c_in,c_out,hidden,height,width", [
    (2, 4, 16, 14, 14), (1, 2, 8, 5, 7), (3, 6, 5, 1, 1)])
def test_written_out_backward_matches_the_convolutions_to_second_order(c_in, c_out, hidden, height, width,
                                                                       implementation):
    """The float32 training path's Function, run in float64 (its products then unfused): values, the
    written-out first derivatives (``gradcheck``) and the recomputed second ones (``gradgradcheck``)."""
    net = conditioner(c_in, c_out, hidden, seed=2)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, c_in + 1, height, width, generator=gen, dtype=torch.float64)[:, 1:].requires_grad_()
    params = tuple(net.parameters())
    fn = lambda x, *p: _GemmConditioner.apply(x, *p)  # noqa: E731
    torch.testing.assert_close(fn(x, *params), as_convolutions(net, x), rtol=0, atol=1e-12)
    v = torch.randn(2, c_out, height, width, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad(fn(x, *params), (x, *params), v)
    want = torch.autograd.grad(as_convolutions(net, x), (x, *params), v)
    for g_got, g_want in zip(got, want):
        torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-11)
    assert torch.autograd.gradcheck(fn, (x, *params))
    assert torch.autograd.gradgradcheck(fn, (x, *params))


@pytest.mark.skipif(not fused_linear_relu_available(), reason="this torch has no oneDNN fused product")
def test_float32_training_takes_the_fused_path_and_matches_the_convolutions(monkeypatch, implementation):
    """float32 with gradients: the Function with oneDNN's fused bias + ReLU products; every
    parameter gets the convolutions' gradient to float32 rounding; no-grad evaluation likewise."""
    net = conditioner(2, 4, 32, seed=4).float()
    x = torch.randn(8, 3, 14, 14)[:, 1:].requires_grad_()
    calls = []
    original = _GemmConditioner.apply
    monkeypatch.setattr(_GemmConditioner, "apply", lambda *a: calls.append(1) or original(*a))
    fast = net(x)
    assert calls == [1]
    plain = as_convolutions(net, x)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    v = torch.randn_like(plain)
    inputs = (x, *net.parameters())
    for g_fast, g_plain in zip(torch.autograd.grad(fast, inputs, v), torch.autograd.grad(plain, inputs, v)):
        assert g_fast is not None
        torch.testing.assert_close(g_fast, g_plain, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain, rtol=1e-5, atol=1e-5)
    assert calls == [1]


def test_other_inputs_keep_the_differentiable_operators(monkeypatch):
    """float64, a context, autocast, ``torch.func`` transforms: not the Function (its products are
    float32 oneDNN ones, without batching rules)."""
    def refuse(*args):
        raise AssertionError("the fused Function ran")

    monkeypatch.setattr(_GemmConditioner, "apply", refuse)
    net = conditioner(2, 4, 8)
    net(torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True))
    torch.manual_seed(0)
    conditional = ConvConditioner(2, 4, 8, context_features=3)
    conditional(torch.randn(2, 2, 4, 4, requires_grad=True), torch.randn(2, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ConvConditioner(2, 4, 8)(torch.randn(2, 2, 4, 4, requires_grad=True))
    net32 = conditioner(2, 4, 8).float()
    x = torch.randn(2, 2, 4, 4)
    jacobian = torch.func.jacrev(lambda t: net32(t).sum())(x)
    want = torch.autograd.grad(as_convolutions(net32, x.requires_grad_()).sum(), x)[0]
    torch.testing.assert_close(jacobian, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "channel_slice"])
@pytest.mark.parametrize("channels,height,width", [(1, 5, 7), (2, 14, 14), (3, 1, 1), (8, 2, 3)])
def test_window_im2col_is_unfold_position_major_and_tap_major(layout, channels, height, width):
    from invflow.layers.conv_conditioner import _from_tap_major, _rows, _tap_major

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, channels + 1, height, width, generator=gen, dtype=torch.float64)
    x = x[:, 1:] if layout == "channel_slice" else x[:, :channels]
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    unfolded = torch.nn.functional.unfold(x, 3, padding=1)  # (B, C·9, H·W), channel-major
    # rows (H, W, B), columns (tap, channel)
    expected = unfolded.view(3, channels, 9, height, width).permute(3, 4, 0, 2, 1).reshape(-1, 9 * channels)
    assert torch.equal(_rows(x), expected)
    weight = torch.randn(4, channels, 3, 3, generator=gen, dtype=torch.float64)
    assert torch.equal(_from_tap_major(_tap_major(weight), weight.shape), weight)
    # the product with the tap-major weight is the convolution
    conv = torch.nn.functional.conv2d(x, weight, padding=1)
    product = (_rows(x) @ _tap_major(weight).T).view(height, width, 3, 4).permute(2, 3, 0, 1)
    torch.testing.assert_close(product, conv, rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels,height,width,batch",
                         [(1, 5, 7, 3), (4, 14, 14, 2), (3, 1, 1, 4), (8, 2, 3, 1)])
def test_col2im_of_tap_planes_is_fold(channels, height, width, batch):
    """``_col2im`` is ``F.fold`` of the same columns in its own layout, and with the flipped taps it
    is the convolution of rows given position-major."""
    from invflow.layers.conv_conditioner import _col2im, _flipped_taps

    gen = torch.Generator().manual_seed(5)
    planes = torch.randn(9 * channels, height * width * batch, generator=gen, dtype=torch.float64)
    columns = planes.view(3, 3, channels, height, width, batch).permute(5, 2, 0, 1, 3, 4)
    folded = torch.nn.functional.fold(columns.reshape(batch, channels * 9, height * width),
                                      (height, width), 3, padding=1)
    got = _col2im(planes, batch, height, width)
    assert got.shape == (batch, channels, height, width) and got.is_contiguous()
    torch.testing.assert_close(got, folded, rtol=0, atol=1e-12)
    hidden = torch.randn(batch, 5, height, width, generator=gen, dtype=torch.float64)
    weight = torch.randn(channels, 5, 3, 3, generator=gen, dtype=torch.float64)
    rows = hidden.permute(2, 3, 0, 1).reshape(-1, 5)  # position-major rows
    conv = torch.nn.functional.conv2d(hidden, weight, padding=1)
    torch.testing.assert_close(_col2im(_flipped_taps(weight) @ rows.T, batch, height, width), conv,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_weight_gradients_by_row_blocks_at_any_thread_count(threads, implementation):
    """At several threads the Function's weight gradients are batched products over row blocks,
    summed (one GEMM where the rows do not split evenly or are few): the same ``aᵀ·b``, and the
    whole Function still matches the convolutions."""
    from invflow.layers.conv_conditioner import _weight_gradient

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(6)
        for rows in (6144, 6143, 10):
            a = torch.randn(rows, 5, generator=gen, dtype=torch.float64)
            b = torch.randn(rows, 7, generator=gen, dtype=torch.float64)
            torch.testing.assert_close(_weight_gradient(a, b), a.T @ b, rtol=0, atol=1e-10)
        net = conditioner(2, 4, 16, seed=7)
        x = torch.randn(4, 2, 28, 28, generator=gen, dtype=torch.float64, requires_grad=True)  # 3136 rows
        v = torch.randn(4, 4, 28, 28, generator=gen, dtype=torch.float64)
        inputs = (x, *net.parameters())
        got = torch.autograd.grad(_GemmConditioner.apply(x, *net.parameters()), inputs, v)
        want = torch.autograd.grad(as_convolutions(net, x), inputs, v)
        for g_got, g_want in zip(got, want):
            torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-10)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("frozen", ["parameters", "input"])
def test_only_the_needed_gradients(frozen, implementation):
    """With frozen parameters only the input's gradient is computed (and the other way round), and it is
    the convolutions' one."""
    net = conditioner(3, 6, 10, seed=8)
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 5, 4, generator=gen, dtype=torch.float64, requires_grad=frozen == "parameters")
    net.requires_grad_(frozen == "input")
    wanted = [x] if frozen == "parameters" else list(net.parameters())
    v = torch.randn(2, 6, 5, 4, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad(_GemmConditioner.apply(x, *net.parameters()), wanted, v)
    want = torch.autograd.grad(as_convolutions(net, x), wanted, v)
    for g_got, g_want in zip(got, want):
        torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-11)
