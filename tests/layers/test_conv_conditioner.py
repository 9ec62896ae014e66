"""The GEMM form of Glow's conditioner (im2col / 1x1 as a product / col2im with flipped taps) is the
same function of the same parameters as the plain convolutions: values, first and second derivatives."""
import pytest
import torch
from torch import nn

from invflow.layers.conv_conditioner import ConvConditioner


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
