"""FlowModel as a distribution, the torch.distributions way (issue 14 item 6): ``sample(shape)``,
``rsample`` where the inverse is differentiable, ``sample_and_log_prob`` in one pass."""
import pytest
import torch
from torch import nn

from core.test_sampling_contract import FAMILIES, tiny
from invflow.core.distributions import StandardNormal
from invflow.core.flow import InverseFlow, SequentialFlow
from invflow.core.model import FlowModel
from invflow.layers.actnorm import ActNorm
from invflow.layers.coupling import AffineCoupling

GLOW_FAMILIES = [name for name in FAMILIES if not name.startswith("resflow")]
RESIDUAL_FAMILIES = [name for name in FAMILIES if name.startswith("resflow")]


def small(name: str, **overrides) -> FlowModel:
    """The family's tiny preset, cut to 2 steps (Glow family) or 1 block (residual) per level."""
    depth = {"model__blocks_per_scale": 1} if name.startswith("resflow") else {"model__steps_per_level": 2}
    return tiny(name, **depth, **overrides)


def toy_model() -> FlowModel:
    torch.manual_seed(0)
    flow = SequentialFlow(
        ActNorm(2, vector=True), AffineCoupling((2,), 8), AffineCoupling((2,), 8, swap=True)
    )
    return FlowModel(flow, StandardNormal((2,)), (2,)).double().eval()


def test_sample_shape_int_tuple_and_empty() -> None:
    model = toy_model()
    assert model.sample(5).shape == (5, 2)  # the original int form
    assert model.sample((3, 4)).shape == (3, 4, 2)
    assert model.sample(torch.Size([2])).shape == (2, 2)
    assert model.sample().shape == (2,)  # torch.distributions: one sample, no batch dimension
    x, log_p = model.sample_and_log_prob((3, 4))
    assert x.shape == (3, 4, 2) and log_p.shape == (3, 4)


@pytest.mark.parametrize("shape, message", [((0, 2), "every entry of sample_shape must be >= 1"),
                                            ((2.5,), "must be a positive integer, got 2.5"),
                                            ("3", "n must be a positive integer, got '3'")])
def test_bad_sample_shape_is_refused(shape, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        toy_model().sample(shape)


@pytest.mark.parametrize("name", FAMILIES)
def test_sample_and_log_prob_matches_log_prob_of_the_sample(name: str) -> None:
    # One pass (the inverse's own log-det) gives the density a second forward pass gives.
    # Residual flows use the exact log-det here, so the two are comparable exactly.
    overrides = {"model__logdet": "exact"} if name.startswith("resflow") else {}
    model = small(name, **overrides).double()
    torch.manual_seed(2)
    x, log_p = model.sample_and_log_prob(5, temperature=0.8)
    with torch.no_grad():
        expected = model.log_prob(x)
    torch.testing.assert_close(log_p, expected, atol=1e-6, rtol=1e-9)


def test_sample_and_log_prob_is_the_raw_sample() -> None:
    model = tiny("glow-mnist-tiny")
    torch.manual_seed(1)
    x, _ = model.sample_and_log_prob(6, temperature=3.0)
    torch.manual_seed(1)
    torch.testing.assert_close(x, model.sample(6, temperature=3.0, raw=True))


@pytest.mark.parametrize("name", FAMILIES)
def test_rsample_is_differentiable_for_every_family(name: str) -> None:
    model = small(name)
    assert model.has_rsample
    torch.manual_seed(3)
    x = model.rsample(4, temperature=0.7, raw=True)
    x.square().mean().backward()
    grads = [p.grad for p in model.flow.parameters() if p.requires_grad]  # (a hybrid's classifier: none)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    torch.manual_seed(3)
    torch.testing.assert_close(x.detach(), model.sample(4, temperature=0.7, raw=True))


class ForgetfulInverse(AffineCoupling):
    """A user's layer whose inverse runs without autograd, and says so."""

    differentiable_inverse = False

    @torch.no_grad()
    def inverse(self, z, context=None):
        return super().inverse(z, context)


def test_rsample_is_refused_naming_a_layer_whose_inverse_is_not_differentiable() -> None:
    flow = SequentialFlow(ActNorm(2, vector=True), ForgetfulInverse((2,), 8))
    model = FlowModel(flow, StandardNormal((2,)), (2,))
    assert not model.has_rsample
    for method in (model.rsample, model.rsample_and_log_prob):
        with pytest.raises(NotImplementedError, match=r"the inverse of flow.flows.1 \(ForgetfulInverse\) is "
                           "not differentiable"):
            method(2)
    assert model.sample(2).shape == (2, 2)  # sampling without gradients still works


def test_inverse_flow_swaps_directions_in_one_pass() -> None:
    model = toy_model()
    inverse = InverseFlow(model.flow)
    z = torch.randn(4, 2, dtype=torch.float64)
    x, logdet = inverse(z)
    expected_x, expected_logdet = model.flow.inverse(z)
    torch.testing.assert_close(x, expected_x)
    torch.testing.assert_close(logdet, expected_logdet)
    back, back_logdet = inverse.inverse(x)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(back_logdet, -logdet)


class TanhMLP(nn.Module):
    """A user's own conditioner: tanh MLP, not the library's."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, 32), nn.Tanh(), nn.Linear(32, n_out))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.net(a)


def test_coupling_takes_a_conditioner_factory() -> None:
    coupling = AffineCoupling((3,), conditioner=TanhMLP)
    assert isinstance(coupling.net, TanhMLP)
    assert (
        coupling.net.net[0].in_features == 1 and coupling.net.net[-1].out_features == 4
    )  # (shift, scale) x 2


def test_coupling_needs_exactly_one_of_hidden_and_conditioner() -> None:
    with pytest.raises(
        ValueError, match="give either hidden .* or a conditioner factory, not both or neither"
    ):
        AffineCoupling((4,))
    with pytest.raises(ValueError, match="not both or neither"):
        AffineCoupling((4,), 8, conditioner=TanhMLP)


def test_conditioner_with_the_wrong_output_is_refused_by_shape() -> None:
    coupling = AffineCoupling((4,), conditioner=lambda n_in, n_out: nn.Linear(n_in, n_out + 1))
    with pytest.raises(
        ValueError, match=r"AffineCoupling: the conditioner must map \(3, 2\) to \(3, 4\), got \(3, 5\)"
    ):
        coupling(torch.randn(3, 4))
