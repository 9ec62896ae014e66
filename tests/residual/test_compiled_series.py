"""The compiled log-det series (``InvertibleResidualBlock.compile_series``): the explicit chain's
vector–Jacobian products against the brute-force Jacobian, the compiled block against the eager
one on the same random draws (values and every gradient, float64), no recompilation per drawn
series length, and the refusals. Its unbiasedness is tested with the eager estimator's tests
(``test_residual_logdet.py``, parametrised over the compiled path)."""
from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import Tensor, nn

from invflow.residual import InvertibleResidualBlock, conv_residual_net, mlp_residual_net
from invflow.residual.compiled_chain import CompiledChain, chain_kinds
from invflow.residual.logdet import power_series

K = 3  # context width of the conditional nets
NETS = {
    "conv": lambda: (conv_residual_net(2, 8), (2, 4, 4), None),
    # one channel: both of narrow_conv's custom operators (im2col and fold forms) in compiled code
    "conv-one-channel": lambda: (conv_residual_net(1, 8), (1, 4, 4), None),
    "conv-mixed-orders": lambda: (conv_residual_net(2, 8, norm_orders=[2, 1.5, 2.5, 2]), (2, 4, 4), None),
    "conv-conditional": lambda: (conv_residual_net(2, 8, context_features=K), (2, 4, 4), K),
    "mlp": lambda: (mlp_residual_net(2, 16, n_hidden=2), (2,), None),
    "mlp-conditional": lambda: (mlp_residual_net(3, 16, context_features=K), (3,), K),
}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from a clean dynamo cache (its recompile counts are its own)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _net(name: str) -> tuple[nn.Module, tuple[int, ...], Tensor | None]:
    net, shape, width = NETS[name]()
    net = net.double()
    with torch.no_grad():  # non-zero context weights, so the context matters
        for m in net.modules():
            if isinstance(m, nn.Linear) and width is not None and m.in_features == width:
                m.weight.normal_(0, 0.5)
    context = None if width is None else torch.randn(5, width, dtype=torch.float64)
    return net, shape, context


@pytest.mark.parametrize("name", NETS)
def test_the_chain_products_are_the_brute_force_jacobian(name: str) -> None:
    """``g(x)``, ``uᵀ J_g(x)`` (stored derivatives) and the differentiable product equal
    ``g`` itself and the rows of ``torch.autograd.functional.jacobian``, in float64."""
    g, shape, context = _net(name)
    x = torch.randn(5, *shape, dtype=torch.float64)
    u = torch.randn_like(x)
    chain = CompiledChain(g, backend="aot_eager").forward(x, context)
    gx, vjp, live_vjp = chain.gx, chain.vjp, chain.live_vjp
    kwargs = {} if context is None else {"context": context}
    torch.testing.assert_close(gx, g(x, **kwargs), atol=1e-12, rtol=0)
    for i in range(x.shape[0]):
        ctx = {} if context is None else {"context": context[i:i + 1]}
        jac = torch.autograd.functional.jacobian(lambda v, ctx=ctx: g(v.unsqueeze(0), **ctx)[0], x[i])
        want = (u[i].reshape(-1) @ jac.reshape(u[i].numel(), -1)).reshape(shape)
        torch.testing.assert_close(vjp(u)[i], want, atol=1e-12, rtol=0)
        torch.testing.assert_close(live_vjp(u)[i], want, atol=1e-12, rtol=0)


def test_the_compiled_series_with_every_basis_probe_is_the_exact_log_det() -> None:
    """Summed over the basis probes, 200 terms of the compiled power series are
    ``log|det(I + J_g)|`` from the brute-force Jacobian (inductor, float64)."""
    g, shape, _ = _net("mlp")
    x = torch.randn(3, *shape, dtype=torch.float64)
    vjp = CompiledChain(g, backend="inductor").forward(x, None).vjp
    basis = torch.eye(2, dtype=torch.float64).unsqueeze(1).expand(2, 3, 2)
    series = sum(power_series(vjp, e, [1.0] * 200) for e in basis)
    eye = torch.eye(2, dtype=torch.float64)
    expected = torch.stack([torch.linalg.slogdet(eye + torch.autograd.functional.jacobian(
        lambda v: g(v.unsqueeze(0))[0], xi)).logabsdet for xi in x])
    torch.testing.assert_close(series, expected, atol=1e-8, rtol=0)


def _run(block: InvertibleResidualBlock, x: Tensor, context: Tensor | None) -> list[Tensor]:
    """The block's output, log-det and the gradients of a loss of both in x, every parameter and
    the context, on the random draws of seed 7."""
    torch.manual_seed(7)
    x = x.clone().requires_grad_(True)
    inputs = [x] + list(block.g.parameters())
    if context is not None:
        context = context.clone().requires_grad_(True)
        inputs.append(context)
    y, logdet = block(x, context)
    loss = (y * torch.linspace(-1, 1, y[0].numel(), dtype=y.dtype).reshape(y[0].shape)).sum() + logdet.mean()
    return [y.detach(), logdet.detach(), *torch.autograd.grad(loss, inputs)]


ESTIMATORS = {
    "neumann-theorem2": {},
    "neumann-derivative": {"neumann_form": "derivative"},
    "neumann-late": {"backward_in_forward": False},
    "backprop": {"gradient": "backprop"},
    "two-probes-rademacher": {"n_samples": 2, "hutchinson": "rademacher", "n_dist": "geometric"},
}


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("name", ["conv", "conv-conditional", "mlp-conditional"])
def test_the_compiled_block_is_the_eager_block_on_the_same_draws(name: str, estimator: str) -> None:
    """Same seed, same roulette length and probes: the same output, estimate and gradients (in
    x, every parameter of g and the context) as the eager block, to float64 rounding."""
    g, shape, context = _net(name)
    block = InvertibleResidualBlock(g, shape, **ESTIMATORS[estimator]).train()
    x = torch.randn(5, *shape, dtype=torch.float64)
    eager = _run(block, x, context)
    block.compile_series("aot_eager")
    compiled = _run(block, x, context)
    assert len(compiled) == len(eager)
    for got, want in zip(compiled, eager):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    assert all(t.abs().sum() > 0 for t in eager[2:]), "every input gets a gradient"


@pytest.mark.device
def test_compiled_inductor_block_matches_eager_in_training_and_eval(device: torch.device) -> None:
    """The inductor-compiled block on the test device: training (Neumann gradient in the forward)
    and ``eval()`` under ``no_grad`` (more terms, no graph) equal the eager block."""
    g, shape, context = _net("conv-conditional")
    g, context = g.to(device), context.to(device)
    block = InvertibleResidualBlock(g, shape).train()
    x = torch.randn(5, *shape, dtype=torch.float64, device=device)
    eager = _run(block, x, context)
    block.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        eager_eval = block(x, context)
    block.train().compile_series("inductor")
    for got, want in zip(_run(block, x, context), eager):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)
    block.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        compiled_eval = block(x, context)
    assert not compiled_eval[1].requires_grad
    for got, want in zip(compiled_eval, eager_eval):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


def test_a_new_series_length_does_not_recompile() -> None:
    """After one training and one evaluation pass, draws of other roulette lengths (and the
    stored-derivative products they repeat) run the compiled code without tracing again."""
    g, shape, _ = _net("conv")
    block = InvertibleResidualBlock(g, shape, n_dist="geometric", n_dist_param=0.3)
    block.compile_series("aot_eager")
    x = torch.randn(4, *shape, dtype=torch.float64)
    torch.manual_seed(0)
    block.train()
    block(x)[1].mean().backward()
    with torch.no_grad():
        block.eval()(x)
    lengths = set()
    with torch.compiler.set_stance("fail_on_recompile"):
        for _ in range(6):
            block.train()(x)[1].mean().backward()
            lengths.add(block.last_logdet_stats()["n_terms"])
            with torch.no_grad():
                block.eval()(x)
    assert len(lengths) > 1, lengths


def test_a_net_that_is_not_a_chain_is_refused_by_name() -> None:
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="layer 0 is Linear"):
        chain_kinds(net)
    block = InvertibleResidualBlock(conv_residual_net(2, 8), (2, 4, 4))
    with pytest.raises(ValueError, match="compile backend must be one of"):
        block.compile_series("tvm")
    block.compile_series(None)
    assert block.compiled_chain is None


def test_a_frozen_parameter_and_input_without_gradient_train_as_in_eager() -> None:
    """The Neumann gradient taken in the forward on detached copies of the hidden states and
    weights reaches only what requires a gradient: one frozen weight, an input without one."""
    g, shape, _ = _net("conv")
    g[1].weight.requires_grad_(False)
    block = InvertibleResidualBlock(g, shape).train()
    x = torch.randn(5, *shape, dtype=torch.float64)
    params = [p for p in g.parameters() if p.requires_grad]

    def grads() -> list[Tensor]:
        torch.manual_seed(5)
        y, logdet = block(x)
        return list(torch.autograd.grad(y.sum() + logdet.mean(), params))

    eager = grads()
    block.compile_series("aot_eager")
    for got, want in zip(grads(), eager):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_a_compiled_block_pickles_and_copies() -> None:
    """A block set to the compiled series holds no compiled function: ``torch.save`` of the whole
    module and ``copy.deepcopy`` work, and the copy runs the compiled series on its own layers."""
    g, shape, _ = _net("mlp")
    block = InvertibleResidualBlock(g, shape).train()
    block.compile_series("aot_eager")
    buffer = io.BytesIO()
    torch.save(block, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    twin = copy.deepcopy(block)
    assert twin.compiled_chain.layers[0] is twin.g[0]
    x = torch.randn(4, *shape, dtype=torch.float64)
    for other in (loaded, twin):
        torch.manual_seed(2)
        want = block(x)[1]
        torch.manual_seed(2)
        torch.testing.assert_close(other(x)[1], want, atol=1e-12, rtol=0)
